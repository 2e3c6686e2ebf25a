//! Where the bundled strategy plugins are: next to the executable after
//! `cargo build --release --workspace`, else in the folder `build.rs` built them into
//! (`SRLM_BUNDLED_PLUGIN_DIR`, searched last).

use std::path::PathBuf;

/// The plugin search folders given on the command line, plus the bundled-plugin folder when
/// the executable's own folder lacks one of the bundled plugins.
pub fn plugin_dirs(mut dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let bundled = PathBuf::from(env!("SRLM_BUNDLED_PLUGIN_DIR"));
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    let names = ["self_rewarding", "temporal", "spin"];
    let file = |d: &PathBuf, n: &str| {
        d.join(format!(
            "{}srlm_plugin_{n}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    };
    let complete = exe_dir
        .as_ref()
        .is_some_and(|d| names.iter().all(|n| file(d, n).is_file()));
    if !complete && bundled.is_dir() && !dirs.contains(&bundled) {
        dirs.push(bundled);
    }
    dirs
}
