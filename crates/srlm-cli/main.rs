//! The `srlm` command line. Stub.
fn main() {}
