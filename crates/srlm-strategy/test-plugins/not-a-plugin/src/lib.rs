//! Test library: a valid shared library without abi_stable's root module symbol.

/// Some exported function, so the library is not empty.
#[no_mangle]
pub extern "C" fn srlm_test_not_a_plugin() -> i32 {
    42
}
