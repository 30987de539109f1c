//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! the `migrations/` folder at compile time, and cargo cannot see that.
//!
//! And say, for the tests, what this machine cannot run: without chromium
//! (`stoksync_no_chromium`) or a test PostgreSQL (`stoksync_no_pg`, no
//! `STOKSYNC_TEST_PG_URL`) the tests that need them are marked
//! `#[ignore = "why"]`, so `cargo test` passes on a fresh machine and
//! reports them as ignored, with the reason, instead of failing or
//! claiming a pass it never ran. Under CI (`CI=true`) neither is ever set:
//! there those tests run, and fail when what they need is missing.
use std::path::Path;

include!("build/needs.rs");

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build/needs.rs");
    println!("cargo:rustc-check-cfg=cfg(stoksync_no_chromium)");
    println!("cargo:rustc-check-cfg=cfg(stoksync_no_pg)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=STOKSYNC_TEST_PG_URL");
    // Installing chromium changes /usr/bin: look again then (a missing
    // path would make cargo rerun this script on every build).
    if Path::new("/usr/bin").is_dir() {
        println!("cargo:rerun-if-changed=/usr/bin");
    }
    let ci = std::env::var("CI").ok();
    let pg = std::env::var("STOKSYNC_TEST_PG_URL").ok();
    let chromium = CHROMIUM.iter().any(|p| Path::new(p).exists());
    for cfg in missing(ci.as_deref(), pg.as_deref(), chromium) {
        println!("cargo:rustc-cfg={cfg}");
    }
}
