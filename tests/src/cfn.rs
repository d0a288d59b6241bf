//! CloudFormation custom resource test support (being written).
