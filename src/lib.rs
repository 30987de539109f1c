//! stoksync: one SQLite stock ledger for every place a seller sells.
//!
//! The layout follows the data:
//! - [`config`]: the TOML file, validated once;
//! - [`alerts`]: what needs the seller, fired and resolved once, to a webhook or a command;
//! - [`providers`]: one folder per marketplace behind the [`providers::Provider`] trait;
//! - [`http`] and [`limit`]: the retry loop and rate limits every adapter shares;
//! - [`error`]: [`error::ProviderError`], below both `http` and `providers`;
//! - [`ledger`]: the SQLite journal, balances, listings, cursors;
//! - [`engine`]: the pure plan and the poll → apply → push executor;
//! - [`cli`]: the command line; [`sandbox`]: faithful fakes of the providers;
//! - [`server`]: health, metrics, the status page and the ERP API over HTTP;
//! - [`lock`] and [`notify`]: one daemon per ledger, and systemd's notify protocol;
//! - [`demo`]: the sandbox and the daemon together, for a first look;
//! - [`clock`]: the one wall clock everything reads; [`failpoint`]: where
//!   the simulator kills the process.

pub mod alerts;
pub mod cli;
pub mod clock;
pub mod config;
pub mod csvin;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod http;
pub mod lease;
pub mod ledger;
pub mod limit;
pub mod lock;
pub mod notify;
pub mod providers;
pub mod rules;
pub mod sandbox;
pub mod server;
