//! health-canary: private endpoint probes (being written).
