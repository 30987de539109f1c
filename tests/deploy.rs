//! The shipped systemd unit and Dockerfile say what the README promises:
//! notify with a watchdog, credentials, hardening, a non-root container
//! with a health check. (No systemd or Docker engine runs here; the notify
//! protocol itself is tested in `service.rs`.)

use std::collections::BTreeMap;

fn unit() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/stoksync.service"
    ))
    .unwrap();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        keys.entry(k.to_string()).or_default().push(v.to_string());
    }
    keys
}

#[test]
fn the_unit_is_notify_with_watchdog_credentials_and_hardening() {
    let u = unit();
    let one = |k: &str| u.get(k).and_then(|v| v.first()).map(String::as_str);
    assert_eq!(one("Type"), Some("notify"));
    assert_eq!(one("Restart"), Some("on-failure"));
    assert!(one("WatchdogSec").is_some());
    assert_eq!(one("StateDirectory"), Some("stoksync"));
    assert_eq!(one("RestartPreventExitStatus"), Some("2"));
    let exec = one("ExecStart").unwrap();
    assert!(exec.ends_with(" run") && exec.contains("--config /etc/stoksync/stoksync.toml"));
    assert!(u["LoadCredential"].len() >= 5);
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert_eq!(one(k), Some(v), "{k}");
    }
}

#[test]
fn the_units_command_line_parses() {
    let u = unit();
    let exec = &u["ExecStart"][0];
    let mut args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    args.push("--help");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoksync"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

#[test]
fn the_container_runs_as_a_user_with_a_health_check() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(text.contains("\nUSER stoksync\n"));
    assert!(text.contains("http://127.0.0.1:8787/healthz"));
    assert!(text.contains("STOKSYNC_CONFIG=/etc/stoksync/stoksync.toml"));
    assert!(text.contains("VOLUME [\"/var/lib/stoksync\"]"));
    assert!(text.contains("ca-certificates"));
    assert_eq!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")),
        2
    );
}
