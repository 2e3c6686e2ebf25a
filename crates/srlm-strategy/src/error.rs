//! The error that crosses the plugin boundary: [`StrategyError`].

use abi_stable::{std_types::RString, StableAbi};

/// An error raised on either side of the plugin boundary.
///
/// It is a `#[repr(u8)]` enum of FFI-safe messages, so it can be returned from a plugin's
/// constructor and from [`Strategy::run_iteration`](crate::Strategy::run_iteration), and from
/// the host's callbacks back into the plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// The plugin rejected its options (the constructor could not parse or accept them).
    #[error("invalid options: {0}")]
    InvalidOptions(RString),
    /// A host callback (sample, judge, train) failed; plugins usually pass it on unchanged.
    #[error("host callback failed: {0}")]
    Host(RString),
    /// The plugin panicked; the SDK caught the panic and carries its message here.
    #[error("plugin panicked: {0}")]
    Panicked(RString),
    /// Any other failure inside the plugin.
    #[error("{0}")]
    Other(RString),
}

impl StrategyError {
    /// A [`StrategyError::Other`] from any message.
    pub fn other(message: impl Into<String>) -> Self {
        StrategyError::Other(RString::from(message.into()))
    }

    /// A [`StrategyError::Host`] from any message (for host implementations).
    pub fn host(message: impl Into<String>) -> Self {
        StrategyError::Host(RString::from(message.into()))
    }

    /// A [`StrategyError::InvalidOptions`] from any message.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        StrategyError::InvalidOptions(RString::from(message.into()))
    }
}
