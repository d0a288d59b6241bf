//! custom-resources: CloudFormation custom resources (being written).
