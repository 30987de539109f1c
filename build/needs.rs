// What this machine cannot run, for the tests: shared by `build.rs` (which
// sets the cfgs) and `tests/harness.rs` (which checks the rule). Plain
// functions, no crate: a build script compiles alone.

/// Where `tests/browser.rs` looks for the browser.
pub const CHROMIUM: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// The cfgs that mark tests ignored: `stoksync_no_chromium` without the
/// browser, `stoksync_no_pg` without `STOKSYNC_TEST_PG_URL`; none under CI
/// (`CI=true`), where every test runs and fails if what it needs is
/// missing.
pub fn missing(ci: Option<&str>, pg_url: Option<&str>, chromium: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if ci == Some("true") {
        return out;
    }
    if !chromium {
        out.push("stoksync_no_chromium");
    }
    if pg_url.is_none_or(|u| u.trim().is_empty()) {
        out.push("stoksync_no_pg");
    }
    out
}
