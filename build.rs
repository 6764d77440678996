//! Build script (being written).
fn main() {}
