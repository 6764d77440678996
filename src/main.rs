//! The `isthmus` binary (being written).
fn main() {}
