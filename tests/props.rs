//! Property tests: whatever comes in from outside (a provider's HTTP answer,
//! the config file, a CSV from the ERP, a request to the ERP API) never
//! panics, and is either understood correctly or refused with an error that
//! says what is wrong and where.
//!
//! Case counts are modest so the file runs in seconds; `PROPTEST_CASES=5000
//! cargo test --test props` soaks longer.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use std::path::Path;
use stoksync::config::Config;
use stoksync::csvin::{read_mappings, read_stock};

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    // `cargo test` explores the same cases on every run, so a red CI run is
    // reproducible and never a coin toss; PROPTEST_RNG_SEED=<n> (or a
    // larger PROPTEST_CASES) explores further, and a failure found so
    // becomes a fixed #[test] here.
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(_) => ProptestConfig::default().rng_seed,
        Err(_) => proptest::test_runner::RngSeed::Fixed(0x5704_5e9c),
    };
    ProptestConfig {
        cases,
        rng_seed,
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

// ---------------------------------------------------------------------------
// The CSV importers
// ---------------------------------------------------------------------------

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

/// What every CSV error must do: name the file, and a line of it for every
/// complaint.
fn check_csv_error(path: &Path, bytes: &[u8], e: &stoksync::csvin::CsvErrors) {
    let shown = e.to_string();
    let file = path.display().to_string();
    assert!(shown.starts_with(&format!("{file}: ")), "{shown:?}");
    assert!(!e.errors.is_empty(), "{shown:?}");
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    for (line, msg) in &e.errors {
        assert!(
            (1..=lines).contains(line),
            "line {line} is not in a file of {lines} lines: {shown:?}"
        );
        assert!(!msg.trim().is_empty(), "{shown:?}");
        assert!(shown.contains(&format!("line {line}: ")), "{shown:?}");
    }
}

/// A cell as an ERP or a spreadsheet might write it, good or not.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9-]{1,12}",
        1 => Just(String::new()),
        1 => Just(" padded ".to_string()),
        1 => Just("\"quoted, with comma\"".to_string()),
        1 => Just("\"line\nbreak\"".to_string()),
        1 => Just("\"unclosed".to_string()),
        1 => Just("a\"b".to_string()),
        1 => Just("x;y".to_string()),
        1 => Just("\u{feff}bom".to_string()),
        1 => Just("99999999999999999999".to_string()),
        1 => Just("-9223372036854775808".to_string()),
        1 => Just("-5".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("1e3".to_string()),
        1 => Just("+7".to_string()),
        1 => Just("\t".to_string()),
        1 => Just("KALEM\u{7}".to_string()),
        1 => Just("\u{a0}NBSP".to_string()),
        1 => Just("ÇİĞÖŞÜ-ıçğ".to_string()),
        1 => Just("bazaardan".to_string()),
        1 => Just("eticaret".to_string()),
        1 => Just("stokdurumu".to_string()),
        1 => Just("pazarsync".to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "\\PC{0,20}",
    ]
}

/// A CSV of `header` and rows of `cells`, with separators and line ends
/// chosen at random: what lands in the importers.
fn csv_text(header: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::collection::vec(cell(), 0..6),
                prop_oneof![Just(","), Just(";"), Just(", ")],
                prop_oneof![Just("\n"), Just("\r\n"), Just("\r"), Just("\n\n")],
            ),
            0..12,
        ),
    )
        .prop_map(move |(bom, rows)| {
            let mut s = String::new();
            if bom {
                s.push('\u{feff}');
            }
            s.push_str(header);
            s.push('\n');
            for (cells, sep, end) in rows {
                s.push_str(&cells.join(sep));
                s.push_str(end);
            }
            s.into_bytes()
        })
}

/// Bytes that are not UTF-8, placed in an otherwise good file.
fn with_bad_bytes(header: &'static str) -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        0usize..5,
        prop_oneof![
            Just(vec![0xffu8]),
            Just(vec![0xc3u8]),
            Just(vec![0xed, 0xa0, 0x80])
        ],
    )
        .prop_map(move |(row, bad)| {
            let mut text = format!("{header}\n").into_bytes();
            for i in 0..5 {
                text.extend_from_slice(format!("SKU-{i},").as_bytes());
                if i == row {
                    text.extend_from_slice(&bad);
                }
                text.extend_from_slice(b"1\n");
            }
            (text, row + 2)
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn stock_csv_of_any_bytes_never_panics(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        csv_text("sku,quantity"),
        csv_text("sku;quantity"),
    ]) {
        let f = write_temp(&bytes);
        if let Err(e) = read_stock(f.path()) {
            check_csv_error(f.path(), &bytes, &e);
        }
    }

    #[test]
    fn mapping_csv_of_any_bytes_never_panics(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        csv_text("sku,provider,listing_id,variant_id"),
        csv_text("sku;provider;listing_id;variant_id"),
    ]) {
        let f = write_temp(&bytes);
        if let Err(e) = read_mappings(f.path()) {
            check_csv_error(f.path(), &bytes, &e);
        }
    }

    /// Bytes that are not UTF-8 are refused with the line they are on.
    #[test]
    fn bytes_that_are_not_utf8_are_named_by_line((bytes, line) in with_bad_bytes("sku,quantity")) {
        let f = write_temp(&bytes);
        let e = read_stock(f.path()).unwrap_err();
        check_csv_error(f.path(), &bytes, &e);
        prop_assert_eq!(e.errors[0].0, line, "{}", e);
    }
}

/// A SKU as the ledger stores it: not empty, no surrounding white space
/// (Unicode's, not just ASCII's), no control characters.
fn ledger_valid_sku(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.chars().any(char::is_control)
}

/// SKUs of every script, some with characters the ledger refuses.
fn any_sku() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9][A-Za-z0-9 ._/-]{0,14}[A-Za-z0-9]",
        3 => "\\PC{1,16}",
        1 => Just("ÇAY-BARDAĞI-6'lı".to_string()),
        1 => Just("a,b".to_string()),
        1 => Just("say \"hi\"".to_string()),
        1 => Just("two\nlines".to_string()),
        1 => "[A-Z]{1,8}".prop_map(|s| format!("{s}\u{1}")),
    ]
    // The reader trims white space (Unicode's) around every cell.
    .prop_filter("no white space around", |s| !s.is_empty() && s.trim() == s)
}

/// A CSV as a real writer makes it; `semicolon`: as a spreadsheet in a
/// Turkish locale saves it (`;` between fields).
fn write_csv(
    header: &[&str],
    rows: &[Vec<String>],
    crlf: bool,
    bom: bool,
    semicolon: bool,
) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(if semicolon { b';' } else { b',' })
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(Vec::new());
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    let mut out = if bom {
        "\u{feff}".as_bytes().to_vec()
    } else {
        Vec::new()
    };
    out.extend(w.into_inner().unwrap());
    out
}

/// One bad row, and how its complaint should read.
#[derive(Debug, Clone)]
enum BadStockRow {
    Negative(i64),
    NotWhole(String),
    EmptySku,
    Duplicate,
    WrongFieldCount,
    ControlInSku,
}

fn bad_stock_row() -> impl Strategy<Value = BadStockRow> {
    prop_oneof![
        (i64::MIN..0).prop_map(BadStockRow::Negative),
        prop_oneof![
            Just("1.5".to_string()),
            Just("1e3".to_string()),
            Just("99999999999999999999".to_string()),
            Just("".to_string()),
            Just("beş".to_string()),
            Just("0x10".to_string()),
            Just("NaN".to_string()),
        ]
        .prop_map(BadStockRow::NotWhole),
        Just(BadStockRow::EmptySku),
        Just(BadStockRow::Duplicate),
        Just(BadStockRow::WrongFieldCount),
        Just(BadStockRow::ControlInSku),
    ]
}

proptest! {
    #![proptest_config(cases(48))]

    /// Good rows written by a real CSV writer read back exactly, and the
    /// ledger takes whatever the reader accepted; a SKU the ledger would
    /// refuse is refused by the reader, with its line.
    #[test]
    fn stock_csv_round_trips(
        rows in prop::collection::btree_map(any_sku(), 0..=i64::MAX, 0..20),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        semicolon in any::<bool>(),
    ) {
        let rows: Vec<(String, i64)> = rows.into_iter().collect();
        let cells: Vec<Vec<String>> = rows.iter().map(|(s, q)| vec![s.clone(), q.to_string()]).collect();
        let bytes = write_csv(&["sku", "quantity"], &cells, crlf, bom, semicolon);
        let f = write_temp(&bytes);
        let all_valid = rows.iter().all(|(s, _)| ledger_valid_sku(s));
        match read_stock(f.path()) {
            Ok(got) => {
                prop_assert!(all_valid, "accepted SKUs the ledger refuses: {:?}", rows);
                prop_assert_eq!(&got, &rows);
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let dir = tempfile::tempdir().unwrap();
                    let ledger = stoksync::ledger::Ledger::open(&dir.path().join("l.db")).await.unwrap();
                    ledger.import_stock(&got, "b", "props").await.unwrap();
                    for (sku, q) in &got {
                        assert_eq!(ledger.stock_of(sku).await.unwrap(), Some(*q), "{sku:?}");
                    }
                    ledger.close().await;
                });
            }
            Err(e) => {
                check_csv_error(f.path(), &bytes, &e);
                prop_assert!(!all_valid, "good rows refused: {}", e);
            }
        }
    }

    /// One bad row among good ones: nothing is imported, and the complaint
    /// names that row's line.
    #[test]
    fn one_bad_stock_row_spoils_the_file_and_is_named(
        n in 1usize..10,
        at in any::<prop::sample::Index>(),
        bad in bad_stock_row(),
    ) {
        let mut lines: Vec<String> = (0..n).map(|i| format!("SKU-{i},{}", i * 7)).collect();
        let i = at.index(n + 1);
        let row = match &bad {
            BadStockRow::Negative(q) => format!("BAD,{q}"),
            BadStockRow::NotWhole(q) => format!("BAD,{q}"),
            BadStockRow::EmptySku => ",4".to_string(),
            BadStockRow::Duplicate => "SKU-0,1".to_string(),
            BadStockRow::WrongFieldCount => "BAD,1,extra".to_string(),
            BadStockRow::ControlInSku => "BA\u{7}D,1".to_string(),
        };
        // A duplicate must come after the row it repeats.
        let i = if matches!(bad, BadStockRow::Duplicate) { i.max(1) } else { i };
        lines.insert(i, row);
        let text = format!("sku,quantity\n{}\n", lines.join("\n"));
        let f = write_temp(text.as_bytes());
        let e = read_stock(f.path()).unwrap_err();
        check_csv_error(f.path(), text.as_bytes(), &e);
        let line = i + 2;
        prop_assert!(e.errors.iter().any(|(l, _)| *l == line), "line {} not named: {}", line, e);
    }

    /// Mapping rows valid for their provider read back exactly.
    #[test]
    fn mapping_csv_round_trips(
        rows in prop::collection::btree_map(
            (0usize..4, "[0-9]{1,9}", "[A-Za-z0-9_-]{1,12}", prop_oneof![Just(String::new()), "[0-9]{1,6}".prop_map(String::from)]),
            any_sku().prop_filter("ledger-valid", |s| ledger_valid_sku(s)),
            0..15,
        ),
        crlf in any::<bool>(),
        semicolon in any::<bool>(),
    ) {
        use stoksync::domain::{ListingRef, ProviderName};
        let rows: Vec<(String, ListingRef)> = rows
            .into_iter()
            .map(|((p, num, code, variant), sku)| {
                let provider = ProviderName::ALL[p];
                let (listing_id, variant_id) = match provider {
                    ProviderName::Bazaardan => (num, variant),
                    ProviderName::Stokdurumu => (num, String::new()),
                    ProviderName::Eticaret => (code, variant),
                    ProviderName::Pazarsync => (format!("prod_{code}"), String::new()),
                };
                (sku, ListingRef { provider, listing_id, variant_id })
            })
            .collect();
        let mut unique = std::collections::HashSet::new();
        let rows: Vec<_> = rows.into_iter().filter(|(_, l)| unique.insert(l.clone())).collect();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|(s, l)| vec![s.clone(), l.provider.to_string(), l.listing_id.clone(), l.variant_id.clone()])
            .collect();
        let bytes = write_csv(&["sku", "provider", "listing_id", "variant_id"], &cells, crlf, false, semicolon);
        let f = write_temp(&bytes);
        let got: Vec<(String, ListingRef)> = read_mappings(f.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| (r.sku, r.listing))
            .collect();
        prop_assert_eq!(got, rows);
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// What `stock export` writes, `stock import` reads back exactly.
    #[test]
    fn a_stock_export_reads_back_exactly(
        rows in prop::collection::btree_map(
            any_sku().prop_filter("ledger-valid", |s| ledger_valid_sku(s)),
            0..=i64::MAX,
            0..20,
        ),
    ) {
        let rows: Vec<(String, i64)> = rows.into_iter().collect();
        let mut bytes = Vec::new();
        stoksync::csvin::write_stock(&mut bytes, rows.iter().map(|(s, q)| (s.as_str(), *q))).unwrap();
        let f = write_temp(&bytes);
        let got = read_stock(f.path()).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(got, rows);
    }
}

// Minimal inputs the CSV properties found.

#[test]
fn a_byte_that_is_not_utf8_is_named_by_line() {
    let f = write_temp(&[0x80]);
    let e = read_stock(f.path()).unwrap_err();
    assert_eq!(e.errors[0].0, 1, "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let bytes = b"sku,quantity\nA,1\nB,\xff\n";
    let f = write_temp(bytes);
    let e = read_stock(f.path()).unwrap_err();
    assert_eq!(e.errors[0].0, 3, "{e}");
}

#[test]
fn a_sku_the_ledger_refuses_is_refused_with_its_line() {
    let f = write_temp(b"sku,quantity\nA,1\n\"two\nlines\",0\nBA\x07D,1\n");
    let e = read_stock(f.path()).unwrap_err();
    let lines: Vec<usize> = e.errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, [3, 5], "{e}");
    let f = write_temp(b"sku,provider,listing_id,variant_id\n\"A\nB\",bazaardan,1,\n");
    let e = read_mappings(f.path()).unwrap_err();
    assert_eq!(e.errors[0].0, 2, "{e}");
}

#[test]
fn a_quantity_too_large_says_so() {
    let f = write_temp(b"sku,quantity\nA,99999999999999999999\nB,-99999999999999999999\n");
    let e = read_stock(f.path()).unwrap_err().to_string();
    assert!(
        e.contains("line 2: quantity `99999999999999999999` for `A` is too large"),
        "{e}"
    );
    assert!(e.contains("line 3:") && e.contains("is negative"), "{e}");
}

// ---------------------------------------------------------------------------
// The ERP API
// ---------------------------------------------------------------------------

mod erp {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use stoksync::engine::Engine;
    use stoksync::ledger::Ledger;
    use stoksync::server::{AppState, serve};
    use tokio_util::sync::CancellationToken;

    /// The daemon's HTTP side over a fresh ledger holding `KALEM-1 = 12`.
    pub struct Api {
        pub base: String,
        pub ledger: Ledger,
        client: reqwest::Client,
        stop: CancellationToken,
        _dir: tempfile::TempDir,
    }

    impl Api {
        pub async fn start(client: reqwest::Client) -> Api {
            let dir = tempfile::tempdir().unwrap();
            let text = "[ledger]\ndatabase = \"ledger.db\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
            let config = Config::parse(text, &dir.path().join("s.toml"), &|_| None).unwrap();
            let ledger = Ledger::open(&config.database).await.unwrap();
            ledger
                .import_stock(&[("KALEM-1".to_string(), 12)], "seed", "seed")
                .await
                .unwrap();
            let engine = Arc::new(Engine::new(ledger.clone(), Vec::new(), config.sync.clone()));
            let state = AppState {
                config: Arc::new(config),
                ledger: ledger.clone(),
                engine,
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let stop = CancellationToken::new();
            tokio::spawn(serve(listener, state, stop.clone()));
            Api {
                base,
                ledger,
                client,
                stop,
                _dir: dir,
            }
        }

        pub async fn snapshot(&self) -> (Vec<stoksync::ledger::StockRow>, i64) {
            (
                self.ledger.list_stock().await.unwrap(),
                self.ledger.movement_count().await.unwrap(),
            )
        }

        pub async fn stop(self) {
            self.stop.cancel();
            self.ledger.close().await;
        }
    }

    /// Percent-encodes every byte but the unreserved ones.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for &b in bytes {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Route {
        Set,
        Adjust,
        Get,
        List,
    }

    #[derive(Debug, Clone)]
    pub struct Call {
        pub route: Route,
        pub sku: Vec<u8>,
        pub body: Vec<u8>,
        pub key: Option<Vec<u8>>,
        pub content_type: Option<&'static str>,
    }

    fn number() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        prop_oneof![
            12 => (-1000i64..1000).prop_map(|n| json!(n)),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => Just(json!(u64::MAX)),
            1 => Just(json!(1.5)),
            1 => Just(json!(-0.0)),
            1 => Just(json!(1e300)),
            1 => Just(json!("12")),
            1 => Just(json!(null)),
            1 => Just(json!([1])),
            1 => Just(json!(true)),
        ]
    }

    fn reason() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        prop_oneof![
            12 => "[a-zçğış]{1,20}".prop_map(|s| json!(s)),
            1 => Just(json!("")),
            1 => Just(json!("   ")),
            1 => Just(json!(null)),
            1 => Just(json!(5)),
            1 => "\\PC{0,2000}".prop_map(|s| json!(s)),
            1 => Just(json!("a\u{0}b")),
        ]
    }

    /// A body as JSON text, with a field missing, doubled or extra now and then.
    fn body(field: &'static str) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => (number(), reason(), 0u8..6).prop_map(move |(n, r, shape)| {
                let text = match shape {
                    0 => format!("{{\"{field}\": {n}}}"),
                    1 => format!("{{\"reason\": {r}}}"),
                    2 => format!("{{\"{field}\": {n}, \"reason\": {r}, \"extra\": 1}}"),
                    3 => format!("{{\"{field}\": {n}, \"{field}\": {n}, \"reason\": {r}}}"),
                    _ => format!("{{\"{field}\": {n}, \"reason\": {r}}}"),
                };
                text.into_bytes()
            }),
            1 => prop::collection::vec(any::<u8>(), 0..200),
            1 => "\\PC{0,200}".prop_map(String::into_bytes),
            1 => Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
            1 => (1usize..50_000).prop_map(move |n| format!("{{\"{field}\": 1, \"reason\": \"{}\"}}", "x".repeat(n)).into_bytes()),
            1 => Just(b"{\"quantity\": 1, \"reason\": \"\xff\xfe\"}".to_vec()),
            1 => Just(Vec::new()),
        ]
    }

    fn sku() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => Just(b"KALEM-1".to_vec()),
            2 => Just(b"DEFTER-1".to_vec()),
            2 => "\\PC{1,30}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 1..30),
            1 => Just(b" KALEM-1".to_vec()),
            1 => Just(b"a/b".to_vec()),
            1 => Just(b"\xff".to_vec()),
            1 => Just(vec![b'x'; 300]),
        ]
    }

    fn key() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            3 => Just(None),
            3 => prop_oneof![Just(b"k1".to_vec()), Just(b"k2".to_vec())].prop_map(Some),
            1 => Just(Some(Vec::new())),
            1 => Just(Some(b"   ".to_vec())),
            1 => Just(Some(vec![b'k'; 201])),
            1 => Just(Some(b"caf\xe9".to_vec())),
            1 => "[!-~]{1,60}".prop_map(|s| Some(s.into_bytes())),
        ]
    }

    pub fn call() -> impl Strategy<Value = Call> {
        (
            prop_oneof![
                4 => Just(Route::Set),
                4 => Just(Route::Adjust),
                2 => Just(Route::Get),
                1 => Just(Route::List),
            ],
            sku(),
            body("quantity"),
            body("delta"),
            key(),
            prop_oneof![
                Just(None),
                Just(Some("application/json")),
                Just(Some("text/plain")),
                Just(Some("application/json; charset=latin1")),
            ],
        )
            .prop_map(|(route, sku, set, adjust, key, content_type)| Call {
                route,
                sku,
                body: if route == Route::Adjust { adjust } else { set },
                key,
                content_type,
            })
    }

    /// What the API answered.
    #[derive(Debug)]
    pub struct Answer {
        pub status: u16,
        pub json: serde_json::Value,
    }

    pub async fn send(api: &Api, c: &Call) -> Result<Answer, String> {
        let client = &api.client;
        let sku = encode(&c.sku);
        let (method, url) = match c.route {
            Route::Set => (reqwest::Method::PUT, format!("{}/v1/stock/{sku}", api.base)),
            Route::Adjust => (
                reqwest::Method::POST,
                format!("{}/v1/stock/{sku}/adjust", api.base),
            ),
            Route::Get => (reqwest::Method::GET, format!("{}/v1/stock/{sku}", api.base)),
            Route::List => (reqwest::Method::GET, format!("{}/v1/stock", api.base)),
        };
        let mut req = client.request(method, &url).body(c.body.clone());
        if let Some(k) = &c.key {
            match reqwest::header::HeaderValue::from_bytes(k) {
                Ok(v) => req = req.header("Idempotency-Key", v),
                Err(_) => return Err("unsendable header".into()),
            }
        }
        if let Some(t) = c.content_type {
            req = req.header("Content-Type", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("no answer from {url} (did the handler panic?): {e}"))?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text)
            .map_err(|_| format!("HTTP {status} ({ctype}) is not JSON: {text:?}"))?;
        if !ctype.starts_with("application/json") {
            return Err(format!(
                "HTTP {status} has content-type {ctype:?}: {text:?}"
            ));
        }
        Ok(Answer { status, json })
    }

    /// What a well-formed body asks for, when it is one.
    pub fn wanted(c: &Call) -> Option<(i64, String)> {
        let v: serde_json::Value = serde_json::from_slice(&c.body).ok()?;
        let o = v.as_object()?;
        if o.len() != 2 {
            return None;
        }
        let field = if c.route == Route::Adjust {
            "delta"
        } else {
            "quantity"
        };
        Some((
            o.get(field)?.as_i64()?,
            o.get("reason")?.as_str()?.to_string(),
        ))
    }

    /// Keys as the server sees them (trimmed), and the SKU each was used for.
    pub type Keys = HashMap<String, String>;

    pub fn key_text(c: &Call) -> Option<Option<String>> {
        match &c.key {
            None => Some(None),
            Some(k) => {
                let s = std::str::from_utf8(k).ok()?.trim().to_string();
                (!s.is_empty() && s.len() <= 200 && s.bytes().all(|b| (0x20..0x7f).contains(&b)))
                    .then_some(Some(s))
            }
        }
    }
}

/// A few calls with arbitrary paths, bodies and headers: every answer is
/// 200 or a 400/404/422 JSON error, a refused call changes nothing, an
/// accepted one changes exactly what it says, and a key already used
/// applies nothing again (and is refused for another SKU).
#[test]
fn erp_api_answers_every_request_with_json_and_changes_only_what_it_says() {
    use erp::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One client for every case: building one loads the TLS roots (~0.1 s).
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let strategy = prop::collection::vec(erp::call(), 1..5);
    let mut runner = proptest::test_runner::TestRunner::new(cases(40));
    let result = runner.run(&strategy, |calls| {
        rt.block_on(async {
            let api = Api::start(client.clone()).await;
            let mut keys = Keys::new();
            for c in &calls {
                let sku = String::from_utf8(c.sku.clone()).ok();
                let before_sku = match &sku {
                    Some(s) => api.ledger.stock_of(s).await.unwrap(),
                    None => None,
                };
                // A set below a very negative balance overflows the
                // journal's delta in the ledger: a known defect, see
                // `erp_set_after_a_huge_negative_adjust_is_refused`.
                if let (Route::Set, Some((q, _)), Some(b)) = (c.route, wanted(c), before_sku)
                    && q.checked_sub(b).is_none()
                {
                    break;
                }
                let before = api.snapshot().await;
                let a = match send(&api, c).await {
                    Ok(a) => a,
                    Err(e) if e == "unsendable header" => continue,
                    Err(e) => return Err(TestCaseError::fail(format!("{c:?}: {e}"))),
                };
                let after = api.snapshot().await;
                prop_assert!(
                    [200, 400, 404, 422].contains(&a.status),
                    "{c:?}: HTTP {} {}",
                    a.status,
                    a.json
                );
                if a.status != 200 {
                    let msg = a.json["error"].as_str().unwrap_or_default();
                    prop_assert!(!msg.trim().is_empty(), "{:?}: {}", c, a.json);
                    prop_assert_eq!(before, after, "{:?}: a refused call changed the ledger", c);
                    continue;
                }
                match c.route {
                    Route::Get | Route::List => {
                        prop_assert_eq!(before, after, "{:?}: a read changed the ledger", c);
                        if c.route == Route::Get {
                            prop_assert_eq!(a.json["quantity"].as_i64(), before_sku, "{:?}", c);
                        }
                    }
                    Route::Set | Route::Adjust => {
                        let sku = sku.clone().expect("a 200 for a SKU that is not UTF-8");
                        let (n, reason) = wanted(c).expect("a 200 for a malformed body");
                        prop_assert!(!reason.trim().is_empty(), "{:?}", c);
                        let key = key_text(c).expect("a 200 for a malformed key");
                        let applied = a.json["applied"].as_bool().unwrap();
                        let now = api.ledger.stock_of(&sku).await.unwrap();
                        prop_assert_eq!(a.json["quantity"].as_i64(), now, "{:?}", c);
                        if applied {
                            let expect = match c.route {
                                Route::Set => n,
                                _ => before_sku.unwrap_or(0) + n,
                            };
                            prop_assert_eq!(now, Some(expect), "{:?}", c);
                            prop_assert_eq!(after.1, before.1 + 1, "{:?}: one movement", c);
                            if let Some(k) = key.clone() {
                                prop_assert!(
                                    !keys.contains_key(&k),
                                    "{:?}: key {} applied twice",
                                    c,
                                    k
                                );
                                keys.insert(k, sku.clone());
                            }
                        } else {
                            prop_assert_eq!(before, after, "{:?}: not applied but changed", c);
                            let k = key.expect("not applied without a key");
                            prop_assert_eq!(
                                keys.get(&k),
                                Some(&sku),
                                "{:?}: key {} was not used for this SKU before",
                                c,
                                k
                            );
                        }
                    }
                }
            }
            api.stop().await;
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// Minimal inputs the ERP API property found.

fn erp_call(route: erp::Route, sku: &[u8], body: &str, key: Option<&str>) -> erp::Call {
    erp::Call {
        route,
        sku: sku.to_vec(),
        body: body.as_bytes().to_vec(),
        key: key.map(|k| k.as_bytes().to_vec()),
        content_type: Some("application/json"),
    }
}

fn with_api(f: impl AsyncFnOnce(&erp::Api)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let api = erp::Api::start(reqwest::Client::new()).await;
        f(&api).await;
        api.stop().await;
    });
}

#[test]
fn a_sku_in_the_path_that_is_not_utf8_is_a_json_400() {
    with_api(async |api| {
        for route in [erp::Route::Set, erp::Route::Adjust, erp::Route::Get] {
            let c = erp_call(
                route,
                b"\xff",
                r#"{"quantity": 1, "delta": 1, "reason": "x"}"#,
                None,
            );
            let a = erp::send(api, &c).await.unwrap();
            assert_eq!(a.status, 400, "{route:?}: {}", a.json);
            assert!(
                a.json["error"].as_str().unwrap().contains("UTF-8"),
                "{}",
                a.json
            );
        }
    });
}

#[test]
fn a_key_used_for_another_sku_is_a_json_422_and_changes_nothing() {
    with_api(async |api| {
        let body = r#"{"quantity": 1, "reason": "x"}"#;
        let first = erp_call(erp::Route::Set, b"KALEM-1", body, Some("k2"));
        assert_eq!(erp::send(api, &first).await.unwrap().status, 200);
        let before = api.snapshot().await;
        // Once for a SKU the ledger does not hold (it answered 503), once
        // for one it does (it answered that SKU's count, "not applied").
        api.ledger
            .import_stock(&[("DEFTER-1".to_string(), 4)], "seed2", "seed")
            .await
            .unwrap();
        let before_defter = api.snapshot().await;
        assert_ne!(before, before_defter);
        for sku in [&b"YOK-1"[..], b"DEFTER-1"] {
            let c = erp_call(erp::Route::Set, sku, body, Some("k2"));
            let a = erp::send(api, &c).await.unwrap();
            assert_eq!(a.status, 422, "{}", a.json);
            assert!(
                a.json["error"].as_str().unwrap().contains("`KALEM-1`"),
                "{}",
                a.json
            );
            assert_eq!(api.snapshot().await, before_defter);
        }
        // The same key for the same SKU is a replay, as before.
        let a = erp::send(api, &first).await.unwrap();
        assert_eq!((a.status, a.json["applied"].as_bool()), (200, Some(false)));
    });
}

#[test]
fn a_body_over_the_limit_is_a_json_413() {
    with_api(async |api| {
        let body = format!(r#"{{"quantity": 1, "reason": "{}"}}"#, "x".repeat(3 << 20));
        let c = erp_call(erp::Route::Set, b"KALEM-1", &body, None);
        let a = erp::send(api, &c).await.unwrap();
        assert_eq!(a.status, 413, "{}", a.json);
        assert!(a.json["error"].is_string(), "{}", a.json);
    });
}

/// The ledger computes the journal's delta as `after - before` unchecked:
/// a set after a balance near `i64::MIN` overflows (a panic in debug
/// builds, a wrong delta in release). The fix belongs in
/// `ledger::stock::apply_movement` (`after.checked_sub(before)`).
#[test]
fn erp_set_after_a_huge_negative_adjust_is_refused() {
    with_api(async |api| {
        let down = format!(r#"{{"delta": {}, "reason": "x"}}"#, i64::MIN + 20);
        let a = erp::send(api, &erp_call(erp::Route::Adjust, b"KALEM-1", &down, None))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", a.json);
        let before = api.snapshot().await;
        let up = format!(r#"{{"quantity": {}, "reason": "x"}}"#, i64::MAX);
        let a = erp::send(api, &erp_call(erp::Route::Set, b"KALEM-1", &up, None)).await;
        let a = a.expect("an answer, not a dropped connection");
        assert_eq!(a.status, 422, "{}", a.json);
        assert_eq!(api.snapshot().await, before);
    });
}

// ---------------------------------------------------------------------------
// The wire parsers, through the real adapters
// ---------------------------------------------------------------------------

/// A loopback server that answers what each case scripts, and JSON that
/// is valid, hostile, or not JSON at all.
mod wire {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl std::fmt::Debug for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let body = String::from_utf8_lossy(&self.body);
            let shown: String = body.chars().take(400).collect();
            write!(f, "HTTP {} {:?} {shown:?}", self.status, self.headers)?;
            if body.chars().count() > 400 {
                write!(f, " (+{} bytes)", self.body.len() - shown.len())?;
            }
            Ok(())
        }
    }

    impl Answer {
        pub fn ok(v: Value) -> Answer {
            Answer {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: v.to_string().into_bytes(),
            }
        }

        /// Whether this answer makes the adapter pause (so the next case
        /// needs a fresh one).
        pub fn pauses(&self) -> bool {
            matches!(self.status, 402 | 429)
                || self
                    .headers
                    .iter()
                    .any(|(k, _)| k.starts_with("x-ratelimit"))
                || self.body.windows(7).any(|w| w == b"AUTH004")
        }
    }

    /// The request's path and query, and its body.
    pub type Responder = Arc<dyn Fn(&str, &[u8]) -> Answer + Send + Sync>;

    struct Rule {
        prefix: String,
        queue: Vec<Answer>,
        then: Responder,
    }

    /// What the server answers: per path prefix, a queue of answers and
    /// then a responder.
    #[derive(Clone, Default)]
    pub struct Script(Arc<Mutex<Vec<Rule>>>);

    impl Script {
        pub fn set(&self, rules: Vec<(&str, Vec<Answer>, Responder)>) {
            *self.0.lock().unwrap() = rules
                .into_iter()
                .map(|(p, queue, then)| Rule {
                    prefix: p.to_string(),
                    queue: queue.into_iter().rev().collect(),
                    then,
                })
                .collect();
        }

        fn answer(&self, path: &str, body: &[u8]) -> Answer {
            let mut rules = self.0.lock().unwrap();
            match rules.iter_mut().find(|r| path.starts_with(&r.prefix)) {
                Some(r) => match r.queue.pop() {
                    Some(a) => a,
                    None => (r.then)(path, body),
                },
                None => Answer {
                    status: 404,
                    headers: Vec::new(),
                    body: b"no rule".to_vec(),
                },
            }
        }
    }

    /// Serves `script` on loopback; returns the base URL.
    pub async fn serve(script: Script) -> String {
        use axum::body::Bytes;
        use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
        use axum::response::IntoResponse;
        let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let script = script.clone();
            async move {
                let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                let a = script.answer(&path, &body);
                let mut r = (
                    StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
                    a.body,
                )
                    .into_response();
                for (k, v) in a.headers {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::try_from(k.as_str()),
                        HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        r.headers_mut().insert(k, v);
                    }
                }
                r
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    pub fn always(f: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static) -> Responder {
        Arc::new(f)
    }

    /// Text that no `serde_json::Value` can hold, spliced in after
    /// serializing: bad numbers, bad UTF-8, nesting past any limit.
    const RAW: [&[u8]; 9] = [
        b"NaN",
        b"-Infinity",
        b"1e999",
        b"-0",
        b"00012",
        b"\"\xff\xfe\"",
        b"\"\\ud800\"",
        b"123456789012345678901234567890",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ];

    fn raw_marker(i: usize) -> String {
        format!("\u{0}RAW{i}")
    }

    /// The JSON text of `v`, with raw markers replaced.
    pub fn render(v: &Value) -> Vec<u8> {
        let mut text = v.to_string().into_bytes();
        for (i, raw) in RAW.iter().enumerate() {
            let marker = format!("\"\\u0000RAW{i}\"").into_bytes();
            while let Some(at) = text.windows(marker.len()).position(|w| w == marker) {
                text.splice(at..at + marker.len(), raw.iter().copied());
            }
        }
        text
    }

    /// A value where another was expected.
    pub fn hostile_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(null)),
            Just(json!(true)),
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(i64::MIN)),
            Just(json!(u64::MAX)),
            Just(json!(1.5)),
            Just(json!(-0.5)),
            Just(json!(2.0)),
            Just(json!(1e300)),
            Just(json!(9.3e18)),
            Just(json!("")),
            Just(json!("12")),
            Just(json!("NaN")),
            Just(json!("2026-13-45 99:99:99")),
            Just(json!("AUTH004")),
            Just(json!("AUTH001")),
            Just(json!("PRODUCTUPDATESTOCK004")),
            Just(json!("line\nbreak")),
            Just(json!("çay")),
            Just(json!("SUCCESS")),
            Just(json!([])),
            Just(json!({})),
            Just(json!([[[[[[1]]]]]])),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,40}".prop_map(|s| json!(s)),
            (1usize..100_000).prop_map(|n| json!("x".repeat(n))),
            (0..RAW.len()).prop_map(|i| json!(raw_marker(i))),
        ]
    }

    /// Any JSON at all.
    pub fn any_json() -> impl Strategy<Value = Value> {
        hostile_leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// One change to a JSON tree, at the node with pre-order index `at`.
    #[derive(Debug, Clone)]
    pub enum Edit {
        Replace(prop::sample::Index, Value),
        Remove(prop::sample::Index),
        Wrap(prop::sample::Index),
    }

    pub fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            4 => (any::<prop::sample::Index>(), hostile_leaf()).prop_map(|(i, v)| Edit::Replace(i, v)),
            1 => (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Edit::Replace(i, v)),
            2 => any::<prop::sample::Index>().prop_map(Edit::Remove),
            1 => any::<prop::sample::Index>().prop_map(Edit::Wrap),
        ]
    }

    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }

    /// The node with pre-order index `n` (0 is the root), and its parent's
    /// key when it has one.
    fn nth(v: &mut Value, mut n: usize) -> Option<&mut Value> {
        fn go<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
            if *n == 0 {
                return Some(v);
            }
            *n -= 1;
            match v {
                Value::Array(a) => a.iter_mut().find_map(|c| go(c, n)),
                Value::Object(o) => o.values_mut().find_map(|c| go(c, n)),
                _ => None,
            }
        }
        go(v, &mut n)
    }

    pub fn apply(v: &mut Value, e: &Edit) {
        let size = count(v);
        match e {
            Edit::Replace(i, new) => {
                if let Some(node) = nth(v, i.index(size)) {
                    *node = new.clone();
                }
            }
            Edit::Wrap(i) => {
                if let Some(node) = nth(v, i.index(size)) {
                    *node = json!([node.take()]);
                }
            }
            Edit::Remove(i) => {
                // Removes a key of the object at that node, or an element.
                if let Some(node) = nth(v, i.index(size)) {
                    match node {
                        Value::Object(o) if !o.is_empty() => {
                            let k = o.keys().nth(i.index(o.len())).cloned().unwrap();
                            o.remove(&k);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            a.remove(i.index(a.len()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// A body built from `template`: as is, edited, any JSON, or bytes.
    pub fn body(template: Value) -> impl Strategy<Value = Vec<u8>> {
        let edited = template.clone();
        prop_oneof![
            1 => Just(render(&template)),
            6 => prop::collection::vec(edit(), 1..4).prop_map(move |edits| {
                let mut v = edited.clone();
                for e in &edits {
                    apply(&mut v, e);
                }
                render(&v)
            }),
            1 => any_json().prop_map(|v| render(&v)),
            1 => prop::collection::vec(any::<u8>(), 0..64),
            1 => Just(b"<html><body>502 Bad Gateway</body></html>".to_vec()),
        ]
    }

    /// An answer around `body`: mostly 200, any status now and then, with
    /// the headers providers send (some of them odd).
    pub fn answer(template: Value, error_body: Value) -> impl Strategy<Value = Answer> {
        let status = prop_oneof![
            12 => Just(200u16),
            1 => Just(201),
            1 => Just(204),
            1 => Just(400),
            1 => Just(401),
            1 => Just(402),
            1 => Just(403),
            1 => Just(404),
            1 => Just(422),
            1 => Just(429),
            1 => Just(500),
            1 => Just(503),
        ];
        let headers = prop_oneof![
            8 => Just(Vec::new()),
            1 => Just(vec![("retry-after".to_string(), "0".to_string())]),
            1 => Just(vec![("retry-after".to_string(), "soon".to_string())]),
            1 => Just(vec![
                ("x-ratelimit-remaining".to_string(), "0".to_string()),
                ("x-ratelimit-reset".to_string(), "1".to_string()),
            ]),
            1 => Just(vec![("content-type".to_string(), "text/html".to_string())]),
        ];
        (status, headers, body(template), body(error_body)).prop_map(
            |(status, headers, ok, err)| Answer {
                status,
                headers,
                body: if (200..300).contains(&status) {
                    ok
                } else {
                    err
                },
            },
        )
    }

    /// Percent-decodes a path segment or query value.
    pub fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The value of `name` in the query of `path`.
    pub fn query<'a>(path: &'a str, name: &str) -> Option<&'a str> {
        path.split_once('?')?
            .1
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}

mod rig {
    use super::wire::{self, Answer, Responder, Script};
    use std::sync::Arc;
    use std::time::Duration;
    use stoksync::config::{
        BazaardanConfig, EticaretConfig, PazarsyncConfig, Secret, StokdurumuConfig, SyncSettings,
    };
    use stoksync::domain::ProviderName;
    use stoksync::http::{Net, RetryPolicy};
    use stoksync::ledger::Ledger;
    use stoksync::providers::{
        Provider, ProviderError, bazaardan, eticaret, pazarsync, stokdurumu,
    };
    use tokio_util::sync::CancellationToken;

    /// One provider's adapter against the script server, rebuilt only when
    /// a case left it paused (building one costs ~0.1 s: TLS roots).
    pub struct Rig {
        pub rt: tokio::runtime::Runtime,
        pub script: Script,
        pub ledger: Ledger,
        base: String,
        kind: ProviderName,
        adapter: Option<Arc<dyn Provider>>,
        /// Adapters built so far.
        built: usize,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        pub fn new(kind: ProviderName) -> Rig {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let script = Script::default();
            let (base, ledger) = rt.block_on(async {
                let base = wire::serve(script.clone()).await;
                let ledger = Ledger::open(&dir.path().join("l.db")).await.unwrap();
                (base, ledger)
            });
            Rig {
                rt,
                script,
                ledger,
                base,
                kind,
                adapter: None,
                built: 0,
                _dir: dir,
            }
        }

        /// The adapter, as the daemon builds it but with limits out of the
        /// way and no backoff worth waiting for.
        pub fn adapter(&mut self) -> Arc<dyn Provider> {
            if let Some(a) = &self.adapter {
                return a.clone();
            }
            let sync = SyncSettings {
                request_timeout: Duration::from_secs(10),
                max_attempts: 2,
                ..SyncSettings::default()
            };
            let policy = RetryPolicy {
                max_attempts: 2,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
                max_inline_wait: Duration::ZERO,
            };
            if self.built > 0 {
                // A fresh ledger too: the pause the last adapter was told to
                // keep is saved in its ledger, and a daemon started on it
                // keeps it (as it must), far too long for a test.
                let path = self._dir.path().join(format!("l{}.db", self.built));
                self.ledger = self.rt.block_on(Ledger::open(&path)).unwrap();
            }
            self.built += 1;
            let (l, base) = (self.ledger.clone(), self.base.clone());
            let net = Net::new(sync.request_timeout, policy, CancellationToken::new()).unwrap();
            let a: Arc<dyn Provider> = self.rt.block_on(async {
                match self.kind {
                    ProviderName::Bazaardan => Arc::new(
                        bazaardan::Bazaardan::new(
                            &BazaardanConfig {
                                base_url: base,
                                client_id: "id".into(),
                                client_secret: Secret::new("secret"),
                                requests_per_minute: 100_000,
                            },
                            &sync,
                            l,
                            &net,
                        )
                        .unwrap(),
                    ) as Arc<dyn Provider>,
                    ProviderName::Stokdurumu => Arc::new(
                        stokdurumu::Stokdurumu::new(
                            &StokdurumuConfig {
                                base_url: base,
                                api_key: Secret::new("sk_test"),
                                requests_per_day: None,
                            },
                            &sync,
                            l,
                            &net,
                        )
                        .unwrap(),
                    ),
                    ProviderName::Eticaret => Arc::new(
                        eticaret::Eticaret::new(
                            &EticaretConfig {
                                base_url: base,
                                api_key: Secret::new("key"),
                                api_secret: Secret::new("secret"),
                                requests_per_minute: 100_000,
                            },
                            &sync,
                            l,
                            &net,
                        )
                        .unwrap(),
                    ),
                    ProviderName::Pazarsync => Arc::new(
                        pazarsync::Pazarsync::new(
                            &PazarsyncConfig {
                                base_url: base,
                                client_id: "id".into(),
                                client_secret: Secret::new("secret"),
                                requests_per_minute: 100_000,
                                requests_per_day: None,
                            },
                            &sync,
                            l,
                            &net,
                        )
                        .unwrap(),
                    ),
                }
            });
            self.adapter = Some(a.clone());
            a
        }

        /// Scripts the server; drops the adapter after the case if any
        /// answer would leave it paused.
        pub fn script(&mut self, rules: Vec<(&str, Vec<Answer>, Responder)>) -> bool {
            let pauses = rules.iter().any(|r| r.1.iter().any(Answer::pauses));
            self.script.set(rules);
            pauses
        }

        /// The adapter for the next call of a case: a fresh one if the last
        /// call met a rate limit (the limiter would hold the next call for
        /// a minute, correctly, but far too long for a test).
        pub fn next(&mut self) -> Arc<dyn Provider> {
            if let Some(a) = &self.adapter
                && a.limiter().stats().rate_limited_answers > 0
            {
                self.adapter = None;
            }
            self.adapter()
        }

        pub fn done(&mut self, paused: bool) {
            if paused {
                self.adapter = None;
            }
        }
    }

    /// What every error from an adapter must be: not a configuration or
    /// ledger error (the config and ledger are fine), and when it is about
    /// an answer, naming the endpoint that gave it.
    pub fn check_error(e: &ProviderError, endpoints: &[&str]) -> Result<(), String> {
        let named = |m: &str| endpoints.iter().any(|ep| m.contains(ep));
        match e {
            ProviderError::RateLimited { .. } => Ok(()),
            ProviderError::QuotaExhausted(m) if !m.trim().is_empty() => Ok(()),
            ProviderError::Transient(m)
            | ProviderError::Rejected(m)
            | ProviderError::Unauthenticated(m)
                if named(m) =>
            {
                Ok(())
            }
            other => Err(format!(
                "{other:?} ({other}) does not name one of {endpoints:?}"
            )),
        }
    }
}

mod bz {
    use super::wire::{Answer, always, query};
    use serde_json::{Value, json};

    pub fn row(id: u64) -> Value {
        json!({
            "order_item_id": id,
            "order_no": format!("BZ-{id}"),
            "status": "accepted",
            "quantity": 2,
            "created_at": "2026-05-08 18:00:00",
            "updated_at": "2026-05-08 18:30:00",
            "product": {"product_id": 356, "sku": "KALEM-1"}
        })
    }

    pub fn page(rows: Vec<Value>) -> Value {
        json!({"ok": true, "data": {"orders": rows, "pagination": {"has_more": false, "limit": 100, "offset": 0}}})
    }

    pub fn detail(id: u64) -> Value {
        let mut r = row(id);
        r["variant_combination_id"] = json!(778);
        json!({"ok": true, "data": r})
    }

    pub fn stock_answer(product_id: Value, stock: Value) -> Value {
        json!({"ok": true, "data": {"product_id": product_id, "variant_combination_id": null, "old_stock": 1, "new_stock": stock, "updated": true}})
    }

    pub fn error() -> Value {
        json!({"ok": false, "error": {"code": "VALIDATION_ERROR", "message": "stock must be >= 0"}})
    }

    /// The rest of the conversation, answered as the seed says.
    pub fn good_orders() -> super::wire::Responder {
        always(|_, _| Answer::ok(page(Vec::new())))
    }

    pub fn good_detail() -> super::wire::Responder {
        always(|path, _| {
            let id = query(path, "order_item_id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Answer::ok(detail(id))
        })
    }

    /// The detail of a row the list sent, as the list sent it (the adapter
    /// applies the line as its detail shows it).
    pub fn detail_of(sent: Vec<Value>) -> super::wire::Responder {
        always(move |path, _| {
            let id: u64 = query(path, "order_item_id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let found = sent
                .iter()
                .rev()
                .find(|r| r.get("order_item_id").and_then(Value::as_u64) == Some(id));
            match found {
                Some(r) => {
                    let mut r = r.clone();
                    r["variant_combination_id"] = json!(778);
                    Answer::ok(json!({"ok": true, "data": r}))
                }
                None => Answer::ok(detail(id)),
            }
        })
    }

    pub fn good_stock() -> super::wire::Responder {
        always(|_, body| {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            Answer::ok(stock_answer(v["product_id"].clone(), v["stock"].clone()))
        })
    }
}

fn push_to(
    provider: stoksync::domain::ProviderName,
    id: &str,
    variant: &str,
    q: i64,
) -> stoksync::domain::StockPush {
    stoksync::domain::StockPush {
        tag: String::new(),
        listing: stoksync::domain::ListingRef {
            provider,
            listing_id: id.into(),
            variant_id: variant.into(),
        },
        quantity: q,
    }
}

/// What a push call may come back with: an outcome per listing sent, a
/// confirmation only of the value sent, and a stop that names the endpoint.
fn check_push(
    batch: &[stoksync::domain::StockPush],
    r: &stoksync::providers::PushResults,
    endpoints: &[&str],
) -> Result<(), TestCaseError> {
    use stoksync::domain::PushOutcome;
    prop_assert!(r.outcomes.len() <= batch.len());
    // A stop is about the provider as a whole (credentials, limits); the
    // push's own endpoint is not needed to act on it.
    let _ = endpoints;
    match &r.stopped {
        None => prop_assert_eq!(r.outcomes.len(), batch.len(), "{:?}", r),
        Some(stoksync::providers::ProviderError::RateLimited { .. }) => {}
        Some(
            stoksync::providers::ProviderError::Unauthenticated(m)
            | stoksync::providers::ProviderError::QuotaExhausted(m),
        ) => prop_assert!(!m.trim().is_empty(), "{:?}", r),
        Some(e) => prop_assert!(false, "a push stopped by {:?}", e),
    }
    for (p, o) in batch.iter().zip(&r.outcomes) {
        match o {
            PushOutcome::Confirmed(q) => prop_assert_eq!(*q, p.quantity, "{:?}", r),
            PushOutcome::Rejected(m) | PushOutcome::Failed(m) => {
                prop_assert!(!m.trim().is_empty(), "{:?}", r)
            }
        }
    }
    Ok(())
}

/// What a poll may come back with.
fn check_poll(
    r: &Result<stoksync::domain::OrderChanges, stoksync::providers::ProviderError>,
    endpoints: &[&str],
) -> Result<(), TestCaseError> {
    match r {
        Ok(c) => {
            for i in &c.items {
                prop_assert!(i.quantity >= 0 && !i.key.is_empty(), "{:?}", i);
            }
            for a in &c.anomalies {
                prop_assert!(!a.key.is_empty() && !a.message.trim().is_empty(), "{:?}", a);
            }
            Ok(())
        }
        Err(e) => rig::check_error(e, endpoints).map_err(TestCaseError::fail),
    }
}

fn poll_request(cursor: Option<&str>) -> stoksync::providers::PollRequest {
    stoksync::providers::PollRequest {
        cursor: cursor.map(str::to_string),
        lookback: std::time::Duration::from_secs(300),
    }
}

/// Runs `strategy` through `body`, with the failure (and its minimal
/// input) as the panic message.
fn run_prop<S: Strategy>(
    default_cases: u32,
    strategy: S,
    mut body: impl FnMut(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = proptest::test_runner::TestRunner::new(cases(default_cases));
    let body = std::cell::RefCell::new(&mut body);
    if let Err(e) = runner.run(&strategy, |v| (body.borrow_mut())(v)) {
        panic!("{e}");
    }
}

/// BaZaaRDan answers of any shape: the poll, a push and the credential
/// check each end in a result or a clear error, never a panic.
#[test]
fn bazaardan_answers_of_any_shape() {
    use stoksync::domain::ProviderName::Bazaardan;
    let mut rig = rig::Rig::new(Bazaardan);
    let answers =
        |tpl: serde_json::Value| prop::collection::vec(wire::answer(tpl, bz::error()), 0..3);
    let strategy = (
        answers(bz::page(vec![bz::row(1), bz::row(2)])),
        answers(bz::detail(1)),
        answers(bz::stock_answer(
            serde_json::json!(356),
            serde_json::json!(5),
        )),
    );
    run_prop(48, strategy, |(orders, details, stocks)| {
        let paused = rig.script(vec![
            ("/orders.php", orders, bz::good_orders()),
            ("/order_detail.php", details, bz::good_detail()),
            ("/stock_update.php", stocks, bz::good_stock()),
        ]);
        let batch = [
            push_to(Bazaardan, "356", "", 5),
            push_to(Bazaardan, "357", "778", 7),
        ];
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(Some("2026-05-08 00:00:00")), &rig.ledger));
        let a = rig.next();
        let push = rig.rt.block_on(a.push_stock(&batch));
        let a = rig.next();
        let check = rig.rt.block_on(a.check_credentials());
        rig.done(paused);
        check_poll(&poll, &["orders.php", "order_detail.php"])?;
        check_push(&batch, &push, &["stock_update.php"])?;
        if let Err(e) = check {
            rig::check_error(&e, &["orders.php"]).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
}

mod sd {
    use super::wire::{Answer, Responder, always};
    use serde_json::{Value, json};

    pub fn product(id: u64, qty: Value) -> Value {
        json!({"id": id, "sku": format!("SKU-{id}"), "name": "Kalem", "stock_qty": qty, "updated_at": "2026-05-08 18:30:00"})
    }

    pub fn page(products: Vec<Value>) -> Value {
        json!({"products": products, "meta": {"page": 1, "pages": 1, "total": 2, "limit": 100}})
    }

    pub fn stock_answer(product_id: Value, qty: Value) -> Value {
        json!({"success": true, "product_id": product_id, "old_qty": 3, "new_qty": qty})
    }

    pub fn error() -> Value {
        json!({"error": "Geçersiz istek"})
    }

    pub fn good_products() -> Responder {
        always(|_, _| Answer::ok(page(Vec::new())))
    }

    pub fn good_stock() -> Responder {
        always(|_, body| {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            Answer::ok(stock_answer(v["product_id"].clone(), v["qty"].clone()))
        })
    }
}

mod v2 {
    use super::wire::{Answer, Responder, always};
    use serde_json::{Value, json};

    pub fn ok(result: Value) -> Value {
        json!({"code": "SUCCESS", "message": "", "result": result})
    }

    pub fn order(id: u64) -> Value {
        json!({"id": id, "code": format!("ORD-{id}"), "status": 1, "createdAt": "2026-05-08 18:00:00", "updatedAt": "2026-05-08 18:30:00"})
    }

    pub fn orders(list: Vec<Value>) -> Value {
        ok(json!({"total": list.len(), "pageSize": 100, "list": list}))
    }

    pub fn show(id: u64, products: Vec<Value>) -> Value {
        ok(
            json!({"order": order(id), "customer": {"id": 9}, "summary": {"total": 10.5}, "products": products}),
        )
    }

    pub fn line(code: &str, barcode: Option<&str>, q: Value) -> Value {
        match barcode {
            Some(b) => json!({"code": code, "barcode": b, "quantity": q}),
            None => json!({"code": code, "quantity": q}),
        }
    }

    pub fn products() -> Value {
        ok(
            json!({"total": 1, "list": [{"code": "P1", "quantity": 3, "variants": [{"barcode": "B1", "quantity": 2}]}]}),
        )
    }

    pub fn updated() -> Value {
        ok(
            json!({"stocks": [{"code": "P1", "status": 1, "variants": [{"barcode": "B1", "status": 1}]}, {"code": "P2", "status": 1}]}),
        )
    }

    pub fn error() -> Value {
        json!({"code": "AUTH002", "message": "Yetkisiz", "result": {}})
    }

    pub fn good_orders() -> Responder {
        always(|_, _| Answer::ok(orders(Vec::new())))
    }

    pub fn good_show() -> Responder {
        always(|path, _| {
            let id = path
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Answer::ok(show(id, vec![line("P1", Some("B1"), json!(1))]))
        })
    }

    pub fn good_products() -> Responder {
        always(|_, _| Answer::ok(ok(json!({"total": 0, "list": []}))))
    }

    /// Every entry sent is set.
    pub fn good_update() -> Responder {
        always(|_, body| {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let stocks: Vec<Value> = v["stocks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    let variants: Vec<Value> = e["variants"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| json!({"barcode": v["barcode"], "status": 1}))
                        .collect();
                    json!({"code": e["code"], "status": 1, "variants": variants})
                })
                .collect();
            Answer::ok(ok(json!({"stocks": stocks})))
        })
    }
}

mod ps {
    use super::wire::{Answer, Responder, always, decode};
    use serde_json::{Value, json};

    pub fn token() -> Value {
        json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})
    }

    pub fn order(id: &str) -> Value {
        json!({"id": id, "order_number": format!("PS-{id}"), "status": "pending", "created_at": "2026-05-08T10:00:00Z", "updated_at": "2026-05-08T10:30:00Z"})
    }

    pub fn orders(list: Vec<Value>) -> Value {
        json!({"data": list, "meta": {"page": 1, "total_pages": 1, "total": 2}})
    }

    pub fn detail(id: &str, items: Vec<Value>) -> Value {
        let mut o = order(id);
        o["items"] = json!(items);
        o
    }

    pub fn item(id: &str, product: &str, q: Value) -> Value {
        json!({"id": id, "product_id": product, "sku": format!("SKU-{product}"), "quantity": q})
    }

    pub fn products() -> Value {
        json!({"data": [{"id": "prod_1", "sku": "A", "stock": 5}, {"id": "prod_2", "sku": "B", "stock": 1.5}], "meta": {"total_pages": 1}})
    }

    pub fn set(id: &str, stock: Value) -> Value {
        json!({"id": id, "stock": stock})
    }

    pub fn batch() -> Value {
        json!({"updated": 1, "failed": 1, "errors": [{"product_id": "prod_2", "message": "stock must be >= 0"}]})
    }

    pub fn error() -> Value {
        json!({"error": {"code": "VALIDATION_ERROR", "message": "stock must be >= 0"}})
    }

    fn id_after(path: &str, prefix: &str) -> String {
        let rest = path.strip_prefix(prefix).unwrap_or("");
        decode(rest.split(['/', '?']).next().unwrap_or(""))
    }

    pub fn good_token() -> Responder {
        always(|_, _| Answer::ok(token()))
    }

    pub fn good_orders() -> Responder {
        always(|_, _| Answer::ok(orders(Vec::new())))
    }

    pub fn good_detail() -> Responder {
        always(|path, _| {
            let id = id_after(path, "/api/v1/orders/");
            Answer::ok(detail(&id, vec![item("it_1", "prod_1", json!(1))]))
        })
    }

    pub fn good_products() -> Responder {
        always(|_, _| Answer::ok(json!({"data": [], "meta": {"total_pages": 1}})))
    }

    pub fn good_set() -> Responder {
        always(|path, body| {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            Answer::ok(set(
                &id_after(path, "/api/v1/products/"),
                v["stock"].clone(),
            ))
        })
    }

    pub fn good_batch() -> Responder {
        always(|_, body| {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let n = v["items"].as_array().map_or(0, Vec::len);
            Answer::ok(json!({"updated": n, "failed": 0, "errors": []}))
        })
    }
}

fn answers(
    tpl: serde_json::Value,
    err: serde_json::Value,
) -> impl Strategy<Value = Vec<wire::Answer>> {
    prop::collection::vec(wire::answer(tpl, err), 0..3)
}

fn check_listings(
    r: &Result<Option<Vec<stoksync::domain::RemoteListing>>, stoksync::providers::ProviderError>,
    endpoints: &[&str],
) -> Result<(), TestCaseError> {
    match r {
        Ok(Some(found)) => {
            for l in found {
                prop_assert!(!l.listing.listing_id.is_empty(), "{:?}", l);
            }
            Ok(())
        }
        Ok(None) => Err(TestCaseError::fail("this provider has a product list")),
        Err(e) => rig::check_error(e, endpoints).map_err(TestCaseError::fail),
    }
}

/// stokdurumu answers of any shape: product reads (drift counts and
/// discovery), pushes and the credential check.
#[test]
fn stokdurumu_answers_of_any_shape() {
    use serde_json::json;
    use stoksync::domain::ProviderName::Stokdurumu;
    let mut rig = rig::Rig::new(Stokdurumu);
    let strategy = (
        answers(
            sd::page(vec![sd::product(1, json!(5)), sd::product(2, json!(0))]),
            sd::error(),
        ),
        answers(sd::stock_answer(json!(1), json!(5)), sd::error()),
    );
    run_prop(48, strategy, |(products, stocks)| {
        let paused = rig.script(vec![
            ("/products", products, sd::good_products()),
            ("/stock", stocks, sd::good_stock()),
        ]);
        let batch = [
            push_to(Stokdurumu, "1", "", 5),
            push_to(Stokdurumu, "2", "", 7),
        ];
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(None), &rig.ledger));
        let a = rig.next();
        let listings = rig.rt.block_on(a.list_listings());
        let a = rig.next();
        let push = rig.rt.block_on(a.push_stock(&batch));
        let a = rig.next();
        let check = rig.rt.block_on(a.check_credentials());
        rig.done(paused);
        check_poll(&poll, &["products"])?;
        check_listings(&listings, &["products"])?;
        check_push(&batch, &push, &["stock"])?;
        if let Err(e) = check {
            rig::check_error(&e, &["products"]).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
}

/// v2 answers of any shape (`code` decides, whatever the HTTP status).
#[test]
fn eticaret_answers_of_any_shape() {
    use serde_json::json;
    use stoksync::domain::ProviderName::Eticaret;
    let mut rig = rig::Rig::new(Eticaret);
    let strategy = (
        answers(v2::orders(vec![v2::order(1), v2::order(2)]), v2::error()),
        answers(
            v2::show(
                1,
                vec![
                    v2::line("P1", Some("B1"), json!(2.0)),
                    v2::line("P2", None, json!(1)),
                ],
            ),
            v2::error(),
        ),
        answers(v2::products(), v2::error()),
        answers(v2::updated(), v2::error()),
    );
    run_prop(48, strategy, |(orders, shows, products, updates)| {
        let paused = rig.script(vec![
            ("/order/lists", orders, v2::good_orders()),
            ("/order/show/", shows, v2::good_show()),
            ("/product/lists", products, v2::good_products()),
            ("/product/updateStocks", updates, v2::good_update()),
        ]);
        let batch = [
            push_to(Eticaret, "P1", "", 5),
            push_to(Eticaret, "P1", "B1", 3),
            push_to(Eticaret, "P2", "", 7),
        ];
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(Some("2000-01-01 00:00:00")), &rig.ledger));
        let a = rig.next();
        let listings = rig.rt.block_on(a.list_listings());
        let a = rig.next();
        let push = rig.rt.block_on(a.push_stock(&batch));
        let a = rig.next();
        let check = rig.rt.block_on(a.check_credentials());
        rig.done(paused);
        check_poll(&poll, &["order/lists", "order/show"])?;
        check_listings(&listings, &["product/lists"])?;
        check_push(&batch, &push, &["product/updateStocks"])?;
        if let Err(e) = check {
            rig::check_error(&e, &["product/lists"]).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
}

/// PazarSync answers of any shape, token answers included (a fresh adapter
/// whenever the case scripts the token endpoint, so the token is fetched).
#[test]
fn pazarsync_answers_of_any_shape() {
    use serde_json::json;
    use stoksync::domain::ProviderName::Pazarsync;
    let mut rig = rig::Rig::new(Pazarsync);
    let strategy = (
        prop::collection::vec(wire::answer(ps::token(), ps::error()), 0..2),
        answers(
            ps::orders(vec![ps::order("ord_1"), ps::order("ord_2")]),
            ps::error(),
        ),
        answers(
            ps::detail(
                "ord_1",
                vec![
                    ps::item("it_1", "prod_1", json!(2)),
                    ps::item("it_2", "prod_2", json!(1)),
                ],
            ),
            ps::error(),
        ),
        answers(ps::products(), ps::error()),
        answers(ps::set("prod_1", json!(5)), ps::error()),
        answers(ps::batch(), ps::error()),
    );
    run_prop(
        40,
        strategy,
        |(tokens, orders, details, products, sets, batches)| {
            let fresh = !tokens.is_empty();
            if fresh {
                rig.done(true);
            }
            let paused = rig.script(vec![
                ("/api/auth/token", tokens, ps::good_token()),
                ("/api/v1/orders/", details, ps::good_detail()),
                ("/api/v1/orders", orders, ps::good_orders()),
                ("/api/v1/products/", sets, ps::good_set()),
                ("/api/v1/products", products, ps::good_products()),
                ("/api/v1/stocks/batch", batches, ps::good_batch()),
            ]);
            let one = [push_to(Pazarsync, "prod_1", "", 5)];
            let two = [
                push_to(Pazarsync, "prod_1", "", 5),
                push_to(Pazarsync, "prod_2", "", 7),
            ];
            let a = rig.next();
            let poll = rig
                .rt
                .block_on(a.poll_orders(&poll_request(None), &rig.ledger));
            let a = rig.next();
            let listings = rig.rt.block_on(a.list_listings());
            let a = rig.next();
            let push_one = rig.rt.block_on(a.push_stock(&one));
            let a = rig.next();
            let push_two = rig.rt.block_on(a.push_stock(&two));
            let a = rig.next();
            let check = rig.rt.block_on(a.check_credentials());
            rig.done(paused || fresh);
            check_poll(&poll, &["auth/token", "orders", "orders/{id}"])?;
            check_listings(&listings, &["auth/token", "products"])?;
            check_push(&one, &push_one, &["auth/token", "products/{id}/stock"])?;
            check_push(&two, &push_two, &["auth/token", "stocks/batch"])?;
            if let Err(e) = check {
                rig::check_error(&e, &["auth/token"]).map_err(TestCaseError::fail)?;
            }
            Ok(())
        },
    );
}

/// PazarSync token answers with any `access_token` and `expires_in`: the
/// token is used, or refused as an answer (not as a configuration error).
#[test]
fn pazarsync_token_answers() {
    use serde_json::json;
    use stoksync::domain::ProviderName::Pazarsync;
    let mut rig = rig::Rig::new(Pazarsync);
    let token = prop_oneof![
        4 => "[A-Za-z0-9._~+/-]{1,40}".prop_map(|s| json!(s)),
        1 => Just(json!("")),
        1 => Just(json!("tok en")),
        1 => Just(json!("tok\u{1}")),
        1 => Just(json!("çay")),
        1 => Just(json!(42)),
        1 => Just(json!(null)),
    ];
    let expires = prop_oneof![
        2 => (0u64..100_000).prop_map(|n| json!(n)),
        2 => any::<u64>().prop_map(|n| json!(n)),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(-1)),
        1 => Just(json!(3600.5)),
        1 => Just(json!("3600")),
        1 => Just(json!(null)),
    ];
    run_prop(32, (token, expires), |(token, expires)| {
        rig.done(true);
        let body = json!({"access_token": token, "expires_in": expires, "token_type": "Bearer"});
        rig.script(vec![
            (
                "/api/auth/token",
                vec![wire::Answer::ok(body)],
                ps::good_token(),
            ),
            ("/api/v1/products", Vec::new(), ps::good_products()),
        ]);
        let a = rig.next();
        let listings = rig.rt.block_on(a.list_listings());
        check_listings(&listings, &["auth/token", "products"])
    });
}

/// Found by `pazarsync_answers_of_any_shape`: a token with a line break
/// was cached and failed every request as "configuration: cannot build
/// request". (The largest `expires_in` panicked: see the unit test
/// `the_largest_expires_in_is_kept_a_day` in `providers::pazarsync::auth`.)
#[test]
fn a_token_that_cannot_be_sent_is_refused_as_an_answer() {
    use serde_json::json;
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Pazarsync);
    let bad = json!({"access_token": "line\nbreak", "expires_in": 3600});
    rig.script(vec![
        (
            "/api/auth/token",
            vec![wire::Answer::ok(bad)],
            ps::good_token(),
        ),
        ("/api/v1/products", Vec::new(), ps::good_products()),
    ]);
    let a = rig.adapter();
    match rig.rt.block_on(a.list_listings()) {
        Err(stoksync::providers::ProviderError::Transient(m)) => {
            assert!(
                m.contains("auth/token") && m.contains("access_token"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The bad token was not cached: the next call fetches a good one.
    assert!(matches!(rig.rt.block_on(a.list_listings()), Ok(Some(_))));
}

/// Found by `pazarsync_answers_of_any_shape` (a CI run): a batch error
/// with an empty `message` became a refusal that said nothing.
#[test]
fn a_batch_error_without_a_message_still_says_what_happened() {
    use serde_json::json;
    use stoksync::domain::{ProviderName::Pazarsync, PushOutcome};
    let mut rig = rig::Rig::new(Pazarsync);
    let reply = json!({"updated": 1, "failed": 1,
        "errors": [{"product_id": "prod_2", "message": ""}]});
    rig.script(vec![
        ("/api/auth/token", Vec::new(), ps::good_token()),
        (
            "/api/v1/stocks/batch",
            vec![wire::Answer::ok(reply)],
            ps::good_batch(),
        ),
    ]);
    let a = rig.adapter();
    let two = [
        push_to(Pazarsync, "prod_1", "", 5),
        push_to(Pazarsync, "prod_2", "", 7),
    ];
    let r = rig.rt.block_on(a.push_stock(&two));
    assert_eq!(r.outcomes[0], PushOutcome::Confirmed(5), "{r:?}");
    match &r.outcomes[1] {
        PushOutcome::Rejected(m) => assert!(m.contains("no reason"), "{m}"),
        o => panic!("{o:?}"),
    }
}

/// Found by `pazarsync_answers_of_any_shape`: a product row with an empty
/// `id` became a listing nobody can push to; it is skipped, the rest kept.
#[test]
fn a_product_without_an_id_is_not_a_listing() {
    use serde_json::json;
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Pazarsync);
    let page = json!({"data": [{"id": "", "sku": "A", "stock": 5},
        {"id": "prod_2", "sku": "B", "stock": 1}], "meta": {"total_pages": 1}});
    rig.script(vec![
        ("/api/auth/token", Vec::new(), ps::good_token()),
        (
            "/api/v1/products",
            vec![wire::Answer::ok(page)],
            ps::good_products(),
        ),
    ]);
    let a = rig.adapter();
    let found = rig
        .rt
        .block_on(a.list_listings())
        .expect("the page is read")
        .expect("PazarSync has a product list");
    let ids: Vec<&str> = found
        .iter()
        .map(|l| l.listing.listing_id.as_str())
        .collect();
    assert_eq!(ids, ["prod_2"]);
}

/// A quantity as a line may carry it: whole (clean), or not.
#[derive(Debug, Clone)]
enum Qty {
    Whole(i64),
    /// Whole, but written as a float (`2.0`): whole for v2, whose
    /// quantities are floats; not for the integer-typed providers.
    WholeFloat(i64),
    Bad(serde_json::Value),
    Missing,
}

fn qty() -> impl Strategy<Value = Qty> {
    use serde_json::json;
    prop_oneof![
        6 => (0i64..50).prop_map(Qty::Whole),
        1 => (0i64..50).prop_map(Qty::WholeFloat),
        1 => Just(Qty::Bad(json!(2.5))),
        1 => Just(Qty::Bad(json!(-1))),
        1 => Just(Qty::Bad(json!("3"))),
        1 => Just(Qty::Bad(json!(null))),
        1 => Just(Qty::Bad(json!(u64::MAX))),
        1 => Just(Qty::Bad(json!(1e300))),
        1 => Just(Qty::Missing),
    ]
}

impl Qty {
    fn put(&self, line: &mut serde_json::Value) {
        match self {
            Qty::Whole(n) => line["quantity"] = (*n).into(),
            Qty::WholeFloat(n) => line["quantity"] = (*n as f64).into(),
            Qty::Bad(v) => line["quantity"] = v.clone(),
            Qty::Missing => {
                line.as_object_mut().map(|o| o.remove("quantity"));
            }
        }
    }

    /// The quantity the line must be applied with, if it is to be applied.
    fn whole(&self, floats_are_whole: bool) -> Option<i64> {
        match self {
            Qty::Whole(n) => Some(*n),
            Qty::WholeFloat(n) if floats_are_whole => Some(*n),
            _ => None,
        }
    }
}

/// An order line: its quantity, and now and then an edit elsewhere.
fn line_spec() -> impl Strategy<Value = (Qty, Option<wire::Edit>)> {
    (qty(), prop::option::weighted(0.2, wire::edit()))
}

fn keys_of(c: &stoksync::domain::OrderChanges) -> std::collections::HashSet<String> {
    c.items
        .iter()
        .map(|i| i.key.clone())
        .chain(c.anomalies.iter().map(|a| a.key.clone()))
        .collect()
}

/// BaZaaRDan order rows: every row is applied or reported (none is dropped
/// silently); a clean row is applied exactly as sent; a bad quantity is
/// reported as such.
#[test]
fn bazaardan_order_rows_are_applied_or_reported() {
    use stoksync::domain::ItemEffect;
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Bazaardan);
    let rows = prop::collection::vec((1u64..8, line_spec()), 1..7);
    run_prop(48, rows, |rows| {
        let mut sent = Vec::new();
        for (id, (q, edit)) in &rows {
            let mut r = bz::row(*id);
            q.put(&mut r);
            if let Some(e) = edit {
                wire::apply(&mut r, e);
            }
            sent.push(r);
        }
        rig.script(vec![
            (
                "/orders.php",
                vec![wire::Answer::ok(bz::page(sent.clone()))],
                bz::good_orders(),
            ),
            (
                "/order_detail.php",
                Vec::new(),
                // Details as the clean rows show them (the only ones whose
                // detail is read); any other's detail is a clean one.
                bz::detail_of(
                    rows.iter()
                        .zip(&sent)
                        .filter(|((_, (q, edit)), _)| edit.is_none() && !matches!(q, Qty::Missing))
                        .map(|(_, r)| r.clone())
                        .collect(),
                ),
            ),
        ]);
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(Some("2026-05-08 00:00:00")), &rig.ledger));
        let c = poll.map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let keys = keys_of(&c);
        let bad_ids = sent
            .iter()
            .filter(|r| r.get("order_item_id").and_then(|v| v.as_u64()).is_none())
            .count();
        let odd_keys = keys.iter().filter(|k| k.parse::<u64>().is_err()).count();
        prop_assert!(
            odd_keys >= bad_ids.min(1),
            "rows without an id unreported: {:?}",
            c
        );
        for ((id, (q, edit)), r) in rows.iter().zip(&sent) {
            if let Some(id) = r.get("order_item_id").and_then(|v| v.as_u64()) {
                prop_assert!(
                    keys.contains(&id.to_string()),
                    "row {} dropped: {:?}",
                    id,
                    c
                );
            }
            let unique = rows.iter().filter(|(i, _)| i == id).count() == 1;
            if !unique || edit.is_some() {
                continue;
            }
            let key = id.to_string();
            match q.whole(false) {
                Some(n) => {
                    let item = c.items.iter().find(|i| i.key == key);
                    let item = item.ok_or_else(|| {
                        TestCaseError::fail(format!("clean row {id} not applied: {c:?}"))
                    })?;
                    prop_assert_eq!(item.quantity, n);
                    prop_assert_eq!(&item.listing_id, "356");
                    prop_assert_eq!(&item.variant_id, "778");
                    prop_assert_eq!(&item.order_ref, &format!("BZ-{id}"));
                    prop_assert_eq!(item.effect, ItemEffect::Hold);
                    prop_assert_eq!(item.sku_hint.as_deref(), Some("KALEM-1"));
                }
                None => {
                    let a = c.anomalies.iter().find(|a| a.key == key);
                    let a = a.ok_or_else(|| {
                        TestCaseError::fail(format!("bad quantity of {id} not reported: {c:?}"))
                    })?;
                    prop_assert!(a.message.contains("quantity"), "{:?}", a);
                    prop_assert!(!c.items.iter().any(|i| i.key == key), "{:?}", c);
                }
            }
        }
        Ok(())
    });
}

/// v2 order lines (quantities are floats there): every line of every order
/// read is applied or reported; a whole float is whole; a fraction is
/// reported, never rounded.
#[test]
fn eticaret_order_lines_are_applied_or_reported() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Eticaret);
    let orders =
        prop::collection::btree_map(1u64..50, prop::collection::vec(line_spec(), 0..4), 1..4);
    let shows: Arc<Mutex<HashMap<u64, serde_json::Value>>> = Default::default();
    run_prop(48, orders, |orders| {
        let mut lines_sent = HashMap::new();
        {
            let mut shows = shows.lock().unwrap();
            shows.clear();
            for (id, specs) in &orders {
                let mut lines = Vec::new();
                for (n, (q, edit)) in specs.iter().enumerate() {
                    let mut l = v2::line(&format!("P{n}"), (n % 2 == 0).then_some("B1"), 0.into());
                    q.put(&mut l);
                    if let Some(e) = edit {
                        wire::apply(&mut l, e);
                    }
                    lines.push(l);
                }
                lines_sent.insert(*id, lines.clone());
                shows.insert(*id, v2::show(*id, lines));
            }
        }
        let list = orders.keys().rev().map(|id| v2::order(*id)).collect();
        let s = shows.clone();
        rig.script(vec![
            (
                "/order/lists",
                vec![wire::Answer::ok(v2::orders(list))],
                v2::good_orders(),
            ),
            (
                "/order/show/",
                Vec::new(),
                wire::always(move |path, _| {
                    let id: u64 = path
                        .rsplit('/')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    wire::Answer::ok(s.lock().unwrap().get(&id).cloned().unwrap_or_default())
                }),
            ),
        ]);
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(Some("2000-01-01 00:00:00")), &rig.ledger));
        let c = poll.map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let keys = keys_of(&c);
        for (id, specs) in &orders {
            prop_assert!(
                c.orders.iter().any(|o| o.order_ref == id.to_string()),
                "order {} not read: {:?}",
                id,
                c
            );
            for (n, (q, edit)) in specs.iter().enumerate() {
                let key = format!("{id}/{}", n + 1);
                prop_assert!(
                    keys.contains(&key),
                    "line {} dropped: {:?} {:?}",
                    key,
                    lines_sent[id],
                    c
                );
                if edit.is_some() {
                    continue;
                }
                match q.whole(true) {
                    Some(q) => {
                        let item = c.items.iter().find(|i| i.key == key);
                        let item = item.ok_or_else(|| {
                            TestCaseError::fail(format!("clean line {key} not applied: {c:?}"))
                        })?;
                        prop_assert_eq!(item.quantity, q);
                        prop_assert_eq!(&item.listing_id, &format!("P{n}"));
                        prop_assert_eq!(&item.variant_id, if n % 2 == 0 { "B1" } else { "" });
                        prop_assert_eq!(&item.status, "1");
                    }
                    None => {
                        let a = c.anomalies.iter().find(|a| a.key == key);
                        let a = a.ok_or_else(|| {
                            TestCaseError::fail(format!("bad line {key} not reported: {c:?}"))
                        })?;
                        prop_assert!(a.message.contains("quantity"), "{:?}", a);
                    }
                }
            }
        }
        Ok(())
    });
}

/// PazarSync order items: every item of every order read is applied or
/// reported; a clean item is applied as sent.
#[test]
fn pazarsync_order_items_are_applied_or_reported() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Pazarsync);
    let orders = prop::collection::btree_map(
        "ord_[a-z0-9]{1,6}",
        prop::collection::vec(line_spec(), 0..4),
        1..4,
    );
    let details: Arc<Mutex<HashMap<String, serde_json::Value>>> = Default::default();
    run_prop(48, orders, |orders| {
        {
            let mut d = details.lock().unwrap();
            d.clear();
            for (id, specs) in &orders {
                let mut items = Vec::new();
                for (n, (q, edit)) in specs.iter().enumerate() {
                    let mut it = ps::item(&format!("it_{n}"), &format!("prod_{n}"), 0.into());
                    q.put(&mut it);
                    if let Some(e) = edit {
                        wire::apply(&mut it, e);
                    }
                    items.push(it);
                }
                d.insert(id.clone(), ps::detail(id, items));
            }
        }
        let list = orders.keys().map(|id| ps::order(id)).collect();
        let d = details.clone();
        rig.script(vec![
            ("/api/auth/token", Vec::new(), ps::good_token()),
            (
                "/api/v1/orders/",
                Vec::new(),
                wire::always(move |path, _| {
                    let id = wire::decode(path.trim_start_matches("/api/v1/orders/"));
                    wire::Answer::ok(d.lock().unwrap().get(&id).cloned().unwrap_or_default())
                }),
            ),
            (
                "/api/v1/orders",
                vec![wire::Answer::ok(ps::orders(list))],
                ps::good_orders(),
            ),
        ]);
        let a = rig.next();
        let poll = rig
            .rt
            .block_on(a.poll_orders(&poll_request(None), &rig.ledger));
        let c = poll.map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let keys = keys_of(&c);
        for (id, specs) in &orders {
            prop_assert!(
                c.orders.iter().any(|o| &o.order_ref == id),
                "order {} not read: {:?}",
                id,
                c
            );
            for (n, (q, edit)) in specs.iter().enumerate() {
                let (by_id, by_place) = (format!("{id}/it_{n}"), format!("{id}/{}", n + 1));
                let sent = details.lock().unwrap()[id]["items"][n].clone();
                let key = match sent.get("id").and_then(|v| v.as_str()) {
                    Some(i) if !i.trim().is_empty() => format!("{id}/{i}"),
                    _ => by_place.clone(),
                };
                prop_assert!(
                    keys.contains(&key) || keys.contains(&by_place),
                    "item {} dropped: {:?}",
                    key,
                    c
                );
                if edit.is_some() {
                    continue;
                }
                match q.whole(false) {
                    Some(q) => {
                        let item = c.items.iter().find(|i| i.key == by_id);
                        let item = item.ok_or_else(|| {
                            TestCaseError::fail(format!("clean item {by_id} not applied: {c:?}"))
                        })?;
                        prop_assert_eq!(item.quantity, q);
                        prop_assert_eq!(&item.listing_id, &format!("prod_{n}"));
                        let sku = format!("SKU-prod_{n}");
                        prop_assert_eq!(item.sku_hint.as_deref(), Some(sku.as_str()));
                    }
                    None => {
                        let a = c.anomalies.iter().find(|a| a.key == by_id);
                        let a = a.ok_or_else(|| {
                            TestCaseError::fail(format!("bad item {by_id} not reported: {c:?}"))
                        })?;
                        prop_assert!(a.message.contains("quantity"), "{:?}", a);
                    }
                }
            }
        }
        Ok(())
    });
}

/// Found by `eticaret_order_lines_are_applied_or_reported`: a line whose
/// quantity was a string was reported as "invalid type: string "3",
/// expected a JSON number", naming no field.
#[test]
fn a_line_of_the_wrong_type_names_its_field() {
    use serde_json::json;
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Eticaret);
    let show = v2::show(
        7,
        vec![
            v2::line("P1", None, json!("3")),
            json!({"code": 5, "quantity": 1}),
        ],
    );
    rig.script(vec![
        (
            "/order/lists",
            vec![wire::Answer::ok(v2::orders(vec![v2::order(7)]))],
            v2::good_orders(),
        ),
        (
            "/order/show/",
            vec![wire::Answer::ok(show)],
            v2::good_show(),
        ),
    ]);
    let a = rig.adapter();
    let c = rig
        .rt
        .block_on(a.poll_orders(&poll_request(Some("2000-01-01 00:00:00")), &rig.ledger))
        .unwrap();
    let msgs: Vec<(&str, &str)> = c
        .anomalies
        .iter()
        .map(|a| (a.key.as_str(), a.message.as_str()))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].0 == "7/1" && msgs[0].1.contains("quantity: invalid type"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].0 == "7/2" && msgs[1].1.contains("code: invalid type"),
        "{msgs:?}"
    );
}

/// Found by `pazarsync_order_items_are_applied_or_reported`: an item with
/// an empty id was keyed `order/`, so two such items (or two with one id)
/// counted as one line.
#[test]
fn items_without_a_usable_id_keep_their_own_key() {
    use serde_json::json;
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Pazarsync);
    let items = vec![
        ps::item("", "prod_1", json!(1)),
        ps::item("", "prod_2", json!(2)),
        ps::item("it_9", "prod_3", json!(3)),
        ps::item("it_9", "prod_4", json!(4)),
    ];
    rig.script(vec![
        ("/api/auth/token", Vec::new(), ps::good_token()),
        (
            "/api/v1/orders/",
            vec![wire::Answer::ok(ps::detail("ord_1", items))],
            ps::good_detail(),
        ),
        (
            "/api/v1/orders",
            vec![wire::Answer::ok(ps::orders(vec![ps::order("ord_1")]))],
            ps::good_orders(),
        ),
    ]);
    let a = rig.adapter();
    let c = rig
        .rt
        .block_on(a.poll_orders(&poll_request(None), &rig.ledger))
        .unwrap();
    let keys: Vec<&str> = c.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["ord_1/1", "ord_1/2", "ord_1/it_9"]);
    assert_eq!(c.anomalies.len(), 1, "{:?}", c.anomalies);
    assert_eq!(c.anomalies[0].key, "ord_1/4");
    assert!(
        c.anomalies[0].message.contains("repeats an item id"),
        "{:?}",
        c.anomalies
    );
}

/// A `Retry-After` too large for an `Instant` panics in
/// `limit::Limiter::note_rate_limited` (`Instant::now() + wait`). The fix
/// belongs in `http::retry_after` (clamp, as `feedback` clamps
/// `X-RateLimit-Reset` to a day) or in the limiter (`checked_add`).
#[test]
fn a_huge_retry_after_is_a_rate_limit_not_a_panic() {
    let mut rig = rig::Rig::new(stoksync::domain::ProviderName::Bazaardan);
    let huge = wire::Answer {
        status: 429,
        headers: vec![("retry-after".into(), "9300000000000000000".into())],
        body: bz::error().to_string().into_bytes(),
    };
    rig.script(vec![("/orders.php", vec![huge], bz::good_orders())]);
    let a = rig.adapter();
    let r = rig.rt.block_on(a.check_credentials());
    assert!(
        matches!(
            r,
            Err(stoksync::providers::ProviderError::RateLimited { .. })
        ),
        "{r:?}"
    );
}
