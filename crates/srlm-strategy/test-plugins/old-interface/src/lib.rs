//! Test library: a root module that declares strategy interface 0.9.0, as a plugin built
//! against an older srlm-strategy would. The loader must refuse it, naming both versions.

use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::RStr,
    StableAbi,
};

/// The old root module.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
pub struct StrategyMod {
    /// Name.
    #[sabi(last_prefix_field)]
    pub name: RStr<'static>,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "srlm_strategy";
    const NAME: &'static str = "srlm strategy plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.9.0");
}

/// Exports the old module.
#[export_root_module]
pub fn get_root_module() -> StrategyModRef {
    StrategyMod { name: RStr::from_str("old-interface") }.leak_into_prefix()
}
