//! The error every provider call ends in. It lives below both
//! [`crate::http`] (whose retry loop produces it) and [`crate::providers`]
//! (which re-exports it, so `crate::providers::ProviderError` still names
//! it), so neither module has to import the other's.

use std::time::Duration;

/// Errors the engine acts on. Messages tell the operator what to do.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("rate limited by the provider; waiting {}s before the next request", wait.as_secs())]
    RateLimited { wait: Duration },
    #[error("{0}")]
    QuotaExhausted(String),
    #[error("credentials refused ({0}); check client id/secret or API key in the config")]
    Unauthenticated(String),
    #[error("request refused: {0}")]
    Rejected(String),
    #[error("provider unavailable: {0}")]
    Transient(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("stopped")]
    Cancelled,
}
