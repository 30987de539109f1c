//! What in a daemon's log (or a command's stderr) is a ledger database
//! error: a test whose stoksync logged one fails, whatever else it checked
//! (issue 19: discovery failed 279 times in one run on PostgreSQL, in the
//! log only, while every check of the tests still passed).
//!
//! Standard library only, so any test can include it by path
//! (`#[path = "common/log.rs"] mod log;`): the real-binary harness in
//! `common/mod.rs` checks every process it runs with it, and the simulator
//! can check the log lines of its daemons the same way.
//!
//! What counts (a line containing any of [`LEDGER_ERRORS`]):
//! - `ledger database error` — `LedgerError::Db`'s text: any statement the
//!   database refused or could not run (a type or syntax error, a
//!   constraint, a lost connection, a pool that timed out, SQLite's
//!   `database is locked`). It keeps this prefix through every wrapper
//!   (`ProviderError::Ledger`, the limiter's `cannot record the request in
//!   the ledger's request log: ..`, the HTTP API's `ledger error in the
//!   HTTP API`), as they all print the error with it;
//! - `cannot migrate the ledger database` — `LedgerError::Migrate`;
//! - `error returned from database` and `database is locked` — sqlx's own
//!   words, should a wrapper ever print the sqlx error without the
//!   prefix.
//!
//! What does not: `cannot open the ledger database` (a missing folder or
//! an unreachable server at start: the command exits with it, and the
//! tests that provoke it check the exit), and `lost the active lease`
//! (fencing, a designed outcome). A test that provokes a ledger error on
//! purpose says so per process, with the pattern it expects and why (see
//! `Allowed`); everything else fails it.
// Each including test uses part of it.
#![allow(dead_code)]

/// The words that make a log line a ledger database error.
pub const LEDGER_ERRORS: &[&str] = &[
    "ledger database error",
    "cannot migrate the ledger database",
    "error returned from database",
    "database is locked",
];

/// The lines of `log` that report a ledger database error.
pub fn ledger_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| LEDGER_ERRORS.iter().any(|e| l.contains(e)))
        .map(str::to_string)
        .collect()
}

/// Ledger errors a test expects of one process: lines containing one of
/// these patterns are not held against it. Each comes with why.
#[derive(Debug, Clone, Default)]
pub struct Allowed(pub Vec<(String, String)>);

impl Allowed {
    pub fn allow(&mut self, pattern: &str, why: &str) {
        self.0.push((pattern.to_string(), why.to_string()));
    }

    /// The ledger errors of `log` not allowed.
    pub fn unexpected(&self, log: &str) -> Vec<String> {
        ledger_errors(log)
            .into_iter()
            .filter(|l| !self.0.iter().any(|(p, _)| l.contains(p.as_str())))
            .collect()
    }
}

/// Fails (panics) when `log`, the output of `what`, holds a ledger
/// database error not allowed.
pub fn assert_no_ledger_errors(what: &str, log: &str, allowed: &Allowed) {
    let errors = allowed.unexpected(log);
    if errors.is_empty() {
        return;
    }
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "{what} logged {} ledger database error(s) (a test whose stoksync logs one \
         fails; see tests/common/log.rs):\n{}\n--- the last lines of its log\n{}",
        errors.len(),
        errors
            .iter()
            .take(20)
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
