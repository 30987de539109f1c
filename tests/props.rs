//! Property tests: whatever comes in from outside (a provider's HTTP answer,
//! the config file, a CSV from the ERP, a request to the ERP API) never
//! panics, and is either understood correctly or refused with an error that
//! says what is wrong and where.
//!
//! Case counts are modest so the file runs in seconds; `PROPTEST_CASES=5000
//! cargo test --test props` soaks longer.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use std::path::Path;
use stoksync::config::Config;

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Minimal failing inputs are kept as plain #[test]s beside the
        // properties instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The config loader
// ---------------------------------------------------------------------------

const EXAMPLE: &str = include_str!("../config.example.toml");
const CONFIG_PATH: &str = "/etc/stoksync/stoksync.toml";

/// Every `${VAR}` is set, so the example parses as it stands.
fn all_set(_: &str) -> Option<String> {
    Some("value".to_string())
}

fn parse_config(text: &str) -> Result<Config, stoksync::config::ConfigError> {
    Config::parse(text, Path::new(CONFIG_PATH), &all_set)
}

/// What every config error must do: name the file first, a line that is in
/// the file, and the key it reports.
fn check_config_error(text: &str, e: &stoksync::config::ConfigError) {
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{CONFIG_PATH}:")),
        "the error does not start with the file: {shown:?}"
    );
    assert!(!e.message.trim().is_empty(), "empty message: {shown:?}");
    if let Some(line) = e.line {
        let lines = text.matches('\n').count() + 1;
        assert!(
            (1..=lines).contains(&line),
            "line {line} is not in a file of {lines} lines: {shown:?}"
        );
        assert!(
            shown.starts_with(&format!("{CONFIG_PATH}:{line}: ")),
            "{shown:?}"
        );
    }
    if let Some(key) = &e.key {
        assert!(shown.contains(&format!("`{key}`")), "{shown:?}");
    }
}

/// Bits of TOML, glued at random: most of what a config parser meets.
fn toml_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[ledger]\n".to_string()),
        Just("[sync]\n".to_string()),
        Just("[http]\n".to_string()),
        Just("[providers.bazaardan]\n".to_string()),
        Just("[providers.stokdurumu]\n".to_string()),
        Just("[[providers]]\n".to_string()),
        Just("database".to_string()),
        Just("poll_interval".to_string()),
        Just("safety_stock".to_string()),
        Just("requests_per_day".to_string()),
        Just("base_url".to_string()),
        Just("client_secret".to_string()),
        Just(" = ".to_string()),
        Just("\"".to_string()),
        Just("'''".to_string()),
        Just("\"\"\"".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("${".to_string()),
        Just("${cred:".to_string()),
        Just("}".to_string()),
        Just("$$".to_string()),
        Just("1e999".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("99999999999999999999".to_string()),
        Just("nan".to_string()),
        Just("0x7f".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("true".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just("#".to_string()),
        Just("\u{feff}".to_string()),
        Just("\0".to_string()),
        Just("é".to_string()),
        "[a-z_.]{1,12}",
        "\\PC{0,8}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// A value that may not suit the key it is written under.
fn hostile_toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("26".to_string()),
        Just("99999999999999999999".to_string()),
        Just("1.5".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("true".to_string()),
        Just("\"\"".to_string()),
        Just("\"   \"".to_string()),
        Just("[]".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{}".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"${STOKSYNC_UNSET_VAR}\"".to_string()),
        Just("\"${\"".to_string()),
        Just("\"${1x}\"".to_string()),
        Just("\"${cred:x}\"".to_string()),
        Just("\"${cred:../x}\"".to_string()),
        Just("\"$$\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"-5m\"".to_string()),
        Just("\"soon\"".to_string()),
        Just("\"ftp://x\"".to_string()),
        Just("\"https://x/?y=1\"".to_string()),
        Just("\"unlimited\"".to_string()),
        Just("\"0.0.0.0:80\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("'''two\nlines'''".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "\\PC{0,300}".prop_map(|s| toml_basic_string(&s)),
    ]
}

fn toml_basic_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `key = value` lines of the example, with their 1-based line and
/// dotted key.
fn example_keys() -> Vec<(usize, String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for (i, line) in EXAMPLE.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(name) = t.strip_prefix('[') {
            table = name.trim_end_matches(']').to_string();
            continue;
        }
        if let Some((key, _)) = t.split_once('=') {
            out.push((i + 1, format!("{table}.{}", key.trim()), line.to_string()));
        }
    }
    out
}

fn replace_line(text: &str, line: usize, with: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == line { with } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

#[test]
fn the_example_config_parses_here_too() {
    parse_config(EXAMPLE).unwrap();
    assert!(example_keys().len() > 20);
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text: never a panic; any error names the file, a line in
    /// it, and the key it is about.
    #[test]
    fn config_text_never_panics(text in prop_oneof![any::<String>(), toml_soup()]) {
        if let Err(e) = parse_config(&text) {
            check_config_error(&text, &e);
        }
    }

    /// The example with one value replaced: either it is fine, or the error
    /// names the file, that line and that key.
    #[test]
    fn a_bad_value_is_named_by_key_and_line(
        pick in any::<prop::sample::Index>(),
        value in hostile_toml_value(),
    ) {
        let keys = example_keys();
        let (line, key, _) = &keys[pick.index(keys.len())];
        let text = replace_line(EXAMPLE, *line, &format!("{} = {value}", leaf(key)));
        if let Err(e) = parse_config(&text) {
            check_config_error(&text, &e);
            let shown = e.to_string();
            prop_assert_eq!(e.line, Some(*line), "{}", shown);
            prop_assert!(shown.contains(&format!("`{key}`")), "{shown:?} should name `{key}`");
        }
    }

    /// The example with lines deleted, duplicated, renamed or cut short.
    #[test]
    fn a_mangled_example_never_panics(
        edits in prop::collection::vec(
            (0u8..5, any::<prop::sample::Index>(), "[a-z_]{1,10}", hostile_toml_value()),
            1..4,
        ),
    ) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_string).collect();
        for (kind, at, name, value) in edits {
            let i = at.index(lines.len().max(1)).min(lines.len().saturating_sub(1));
            match kind {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(i, l); }
                2 => lines.insert(i, format!("{name} = {value}")),
                3 => {
                    if let Some((_, v)) = lines[i].clone().split_once('=') {
                        lines[i] = format!("{name} ={v}");
                    }
                }
                _ => {
                    let l = &lines[i];
                    let cut = l.char_indices().map(|(b, _)| b).nth(l.chars().count() / 2).unwrap_or(0);
                    lines[i] = l[..cut].to_string();
                }
            }
            if lines.is_empty() {
                lines.push(String::new());
            }
        }
        let text = lines.join("\n");
        if let Err(e) = parse_config(&text) {
            check_config_error(&text, &e);
        }
    }
}

// Minimal inputs the properties above found.

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let text = replace_line(EXAMPLE, 9, "database = []");
    let e = parse_config(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("ledger.database"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{CONFIG_PATH}:9: `ledger.database`: invalid type")),
        "{e}"
    );
    // A key in a table written `[providers.x]`, and a missing key.
    let e =
        parse_config(&EXAMPLE.replace("requests_per_minute = 22", "requests_per_minute = \"22\""))
            .unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("providers.eticaret.requests_per_minute"),
        "{e}"
    );
    let e = parse_config(&EXAMPLE.replace("api_secret = ", "# api_secret = ")).unwrap_err();
    assert!(e.to_string().contains("missing field `api_secret`"), "{e}");
    assert!(e.to_string().contains("providers.eticaret"), "{e}");
}

#[test]
fn a_daily_quota_of_the_wrong_type_says_what_it_may_be() {
    let e = parse_config(&EXAMPLE.replace("requests_per_day = 500", "requests_per_day = 1.5"))
        .unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("providers.stokdurumu.requests_per_day"),
        "{e}"
    );
    assert!(e.message.contains("\"unlimited\""), "{e}");
}

/// Keys whose values are secrets.
const SECRET_KEYS: [&str; 5] = [
    "providers.bazaardan.client_secret",
    "providers.stokdurumu.api_key",
    "providers.eticaret.api_key",
    "providers.eticaret.api_secret",
    "providers.pazarsync.client_secret",
];

proptest! {
    #![proptest_config(cases(64))]

    /// A secret written with the wrong type is not echoed in the error.
    #[test]
    #[ignore = "defect 6, fixed on branch helper-mapping-secret"]
    fn a_secret_of_the_wrong_type_is_not_echoed(
        pick in 0..SECRET_KEYS.len(),
        digits in "[1-9][0-9]{7,15}",
        shape in 0u8..3,
    ) {
        let key = SECRET_KEYS[pick];
        let (line, _, _) = example_keys().into_iter().find(|k| k.1 == key).unwrap();
        let value = match shape {
            0 => digits.clone(),
            1 => format!("[{digits}]"),
            _ => format!("{{ v = {digits} }}"),
        };
        let text = replace_line(EXAMPLE, line, &format!("{} = {value}", leaf(key)));
        let e = parse_config(&text).unwrap_err();
        prop_assert!(!e.to_string().contains(&digits), "secret echoed: {}", e);
    }
}
