//! custom-resources (placeholder: being written).
fn main() {}
