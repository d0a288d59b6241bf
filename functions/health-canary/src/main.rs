//! health-canary (placeholder: being written).
fn main() {}
