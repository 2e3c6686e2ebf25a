//! `cargo xtask`: developer tasks (fetch, bench, ci). Stub.
fn main() {}
