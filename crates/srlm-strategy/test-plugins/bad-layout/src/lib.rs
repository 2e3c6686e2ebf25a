//! Test library: a root module with the current interface version but a different layout
//! (`version` is a number, not a string), as a plugin built against a modified
//! srlm-strategy would have. The loader must refuse it with a layout-mismatch error.

use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::RStr,
    StableAbi,
};

/// The mismatched root module.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
pub struct StrategyMod {
    /// Interface version.
    pub interface_version: RStr<'static>,
    /// Name.
    pub name: RStr<'static>,
    /// Version, with the wrong type.
    #[sabi(last_prefix_field)]
    pub version: u64,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "srlm_strategy";
    const NAME: &'static str = "srlm strategy plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(srlm_strategy::INTERFACE_VERSION);
}

/// Exports the mismatched module.
#[export_root_module]
pub fn get_root_module() -> StrategyModRef {
    StrategyMod {
        interface_version: RStr::from_str(srlm_strategy::INTERFACE_VERSION),
        name: RStr::from_str("bad-layout"),
        version: 1,
    }
    .leak_into_prefix()
}
