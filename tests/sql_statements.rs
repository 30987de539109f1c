//! Every SQL statement of the program, found by reading the source: each
//! binds exactly the placeholders it uses, and each prepares on a real,
//! migrated SQLite ledger and (with STOKSYNC_TEST_PG_URL set; CI must set
//! it) on a fresh PostgreSQL one. Preparing on PostgreSQL is what catches a
//! placeholder used with two types (`operator does not exist: text =
//! bigint`), which SQLite takes silently: issue 19 found discovery binding
//! five values to `$1, $2, $1, $2, $3`, so every discovery failed on
//! PostgreSQL and quietly matched nothing on SQLite.
//!
//! What the scan takes for a statement:
//! - the first argument of `sqlx::query`, `query_as`, `query_scalar`,
//!   `raw_sql` (and their `_with` forms), turbofish or not, when it is a
//!   string literal, also through `sql(conn, "...")` (whose PostgreSQL
//!   spelling is what is prepared there);
//! - its binds: the `.bind(..)` calls chained up to the call that runs it
//!   (`execute`, `fetch*`), or, for the few statements that get their
//!   last binds elsewhere, the `var.bind(..)` chain [`CONTINUED`] names;
//! - the SQL of a `Backend::Sqlite =>` / `Backend::Postgres =>` arm of a
//!   function [`DYNAMIC`] names as the source of a statement's text.
//!
//! Everything else that could be SQL fails the scan until it is reviewed:
//! a call whose text is built at run time must be in [`DYNAMIC`]; a
//! literal that reads like SQL (starts with SELECT, INSERT, ...) outside
//! such a call must be the piece of a [`DYNAMIC`] statement or in
//! [`NOT_STATEMENTS`]; a statement that runs on one backend only must be
//! in [`ONLY`] (else it fails to prepare on the other); an entry of these
//! lists that matches nothing fails too. Code inside `#[cfg(test)] mod`
//! blocks is not scanned (tests may run wrong SQL on purpose).
//!
//! PostgreSQL prepares each statement without parameter types, inferring
//! them from the text alone; a parameter whose type only the bound value
//! would tell (`$1 IS NULL`) must say it (`CAST($1 AS TEXT) IS NULL`).

#[path = "common/pg.rs"]
mod pg;

use sqlx::{AssertSqlSafe, Connection, Either, Executor, SqlSafeStr, Statement as _};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use stoksync::ledger::{Backend, Database, Ledger};

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Both,
    Sqlite,
    Postgres,
}

/// Calls whose SQL is made at run time, each reviewed: `(file, function,
/// the start of the argument as written (whitespace collapsed), where its
/// text comes from, binds, why)`.
/// With a source `(file, function)`, the text is one of that function's
/// `Backend::* =>` arms, each checked with `binds` binds and prepared on
/// its backend. Without one, the SQL-looking literals of the function are
/// pieces of the statement (not statements), and `why` says what keeps it
/// right on both backends.
type DynamicEntry = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    Option<usize>,
    &'static str,
);

const DYNAMIC: &[DynamicEntry] = &[
    (
        "src/ledger/mod.rs",
        "connect_shared",
        "sqlx::AssertSqlSafe(sql)",
        None,
        None,
        "the connection settings (SQLite PRAGMAs, PostgreSQL's idle \
         timeout) formatted from constants; every ledger open runs them",
    ),
    (
        "src/ledger/orders.rs",
        "known_items",
        "sqlx::AssertSqlSafe(sql)",
        None,
        None,
        "an IN list of `numbered_from(2, n)` after `$1`, bound in the same \
         loop as the keys; orders' tests run it on both backends",
    ),
    (
        "src/ledger/orders.rs",
        "known_orders",
        "sqlx::AssertSqlSafe(sql)",
        None,
        None,
        "as known_items",
    ),
    (
        "src/ledger/lease.rs",
        "db_now",
        "sqlx::AssertSqlSafe(backend.now_ms_sql())",
        Some(("src/ledger/backend.rs", "now_ms_sql")),
        Some(0),
        "the server's clock, spelled per backend",
    ),
    (
        "src/ledger/copy.rs",
        "schema_tables",
        "q",
        Some(("src/ledger/copy.rs", "schema_tables")),
        Some(0),
        "the schema's tables, read per backend",
    ),
    (
        "src/ledger/copy.rs",
        "copy_ledger",
        "AssertSqlSafe(format!( \"SELECT setval(",
        None,
        None,
        "PostgreSQL only: identity columns named by information_schema; \
         tests/db_copy.rs copies into PostgreSQL",
    ),
    (
        "src/ledger/copy.rs",
        "count",
        "AssertSqlSafe(format!(\"SELECT COUNT(*) FROM",
        None,
        None,
        "a table of TABLES; tests/db_copy.rs runs it on both backends",
    ),
    (
        "src/ledger/copy.rs",
        "copy_table",
        "AssertSqlSafe(select)",
        None,
        None,
        "the columns both schemas agree on; tests/db_copy.rs",
    ),
    (
        "src/ledger/copy.rs",
        "insert",
        "AssertSqlSafe(sql)",
        None,
        None,
        "one `$n` per value, bound in the same order; tests/db_copy.rs",
    ),
];

/// Statements that run on one backend only: `(file, function, a piece
/// of the statement's text, backend, why)`.
const ONLY: &[(&str, &str, &str, On, &str)] = &[
    (
        "src/ledger/mod.rs",
        "connect_shared",
        "PRAGMA journal_mode",
        On::Sqlite,
        "in the SQLite arm of connect",
    ),
    (
        "src/ledger/mod.rs",
        "begin_unfenced",
        "pg_advisory_xact_lock",
        On::Postgres,
        "PostgreSQL's writer lock (SQLite has BEGIN IMMEDIATE)",
    ),
    (
        "src/ledger/maintenance.rs",
        "backup_to",
        "VACUUM INTO",
        On::Sqlite,
        "`backup` copies a SQLite file",
    ),
    (
        "src/ledger/maintenance.rs",
        "integrity_problems",
        "PRAGMA integrity_check",
        On::Sqlite,
        "returns early on PostgreSQL",
    ),
    (
        "src/ledger/maintenance.rs",
        "check_copy",
        "",
        On::Sqlite,
        "checks a SQLite backup file over a SqliteConnection",
    ),
    (
        "src/ledger/copy.rs",
        "copy_ledger",
        "information_schema",
        On::Postgres,
        "only when the target is PostgreSQL",
    ),
    (
        "src/ledger/copy.rs",
        "columns",
        "pragma_table_info",
        On::Sqlite,
        "the SQLite arm",
    ),
    (
        "src/ledger/copy.rs",
        "columns",
        "information_schema",
        On::Postgres,
        "the PostgreSQL arm",
    ),
];

/// Statements built in one place and bound further in another: `(file,
/// function, variable)`; the function's one `variable.bind(..)` chain
/// adds its binds to each statement of the function not run where built.
const CONTINUED: &[(&str, &str, &str)] = &[("src/ledger/mod.rs", "record_pushes", "q")];

/// Literals that read like SQL but are no statement: `(file, function,
/// why)`.
const NOT_STATEMENTS: &[(&str, &str, &str)] = &[
    (
        "src/ledger/backend.rs",
        "to_postgres",
        "the pattern the PostgreSQL spelling of json_each looks for",
    ),
    (
        "src/ledger/mod.rs",
        "begin_unfenced",
        "SQLite's BEGIN IMMEDIATE, which sqlx runs to start a transaction",
    ),
];

/// The sqlx functions that take a statement.
const QUERY_FNS: &[&str] = &[
    "query",
    "query_as",
    "query_scalar",
    "raw_sql",
    "query_with",
    "query_as_with",
    "query_scalar_with",
];

/// The methods that run a statement (and end its chain of binds).
const RUNS: &[&str] = &[
    "execute",
    "execute_many",
    "fetch",
    "fetch_all",
    "fetch_one",
    "fetch_optional",
    "fetch_many",
];

/// The first words of a SQL text.
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "PRAGMA",
    "VACUUM",
    "BEGIN",
    "CREATE",
    "ALTER",
    "DROP",
    "SET",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "ANALYZE",
    "EXPLAIN",
    "REINDEX",
    "REPLACE",
    "UPSERT",
    "TRUNCATE",
    "LOCK",
];

/// The review lists, as parameters so the scanner's own test can use
/// others.
struct Rules<'a> {
    dynamic: &'a [DynamicEntry],
    only: &'a [(&'a str, &'a str, &'a str, On, &'a str)],
    continued: &'a [(&'a str, &'a str, &'a str)],
    not_statements: &'a [(&'a str, &'a str, &'a str)],
}

const RULES: Rules<'static> = Rules {
    dynamic: DYNAMIC,
    only: ONLY,
    continued: CONTINUED,
    not_statements: NOT_STATEMENTS,
};

/// One statement found.
#[derive(Debug, Clone)]
struct Statement {
    file: String,
    line: usize,
    func: String,
    text: String,
    /// Passed through `sql(conn, ..)`: PostgreSQL runs its translation.
    translated: bool,
    binds: usize,
    /// Whether `binds` was counted (else the scan reported why not).
    counted: bool,
    on: On,
}

impl Statement {
    fn at(&self) -> String {
        format!("{}:{} ({})", self.file, self.line, self.func)
    }

    /// The text as `backend` runs it.
    fn text_for(&self, backend: Backend) -> String {
        if self.translated {
            backend.statement(&self.text)
        } else {
            self.text.clone()
        }
    }
}

/// What the scan of the tree found.
#[derive(Debug, Default)]
struct Scan {
    statements: Vec<Statement>,
    /// Reviewed dynamic calls met, `file:line (fn)`.
    dynamic: Vec<String>,
    errors: Vec<String>,
}

// ---- lexing ---------------------------------------------------------------

/// A string literal: its span in the source (prefix and quotes included)
/// and its value.
#[derive(Debug)]
struct Literal {
    start: usize,
    end: usize,
    value: String,
}

/// The source with comments and the insides of string and char literals
/// blanked (same byte offsets), and the string literals.
struct Lexed {
    code: Vec<u8>,
    literals: Vec<Literal>,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn lex(src: &str) -> Lexed {
    let b = src.as_bytes();
    let mut code = b.to_vec();
    let mut literals = Vec::new();
    let blank = |code: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut code[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut code, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            i = j;
        } else if !prev_ident && (b[i] == b'r' || b[i..].starts_with(b"br")) && {
            let r = if b[i] == b'r' { i } else { i + 1 };
            let hashes = b[r + 1..].iter().take_while(|&&c| c == b'#').count();
            b.get(r + 1 + hashes) == Some(&b'"')
        } {
            let r = if b[i] == b'r' { i } else { i + 1 };
            let hashes = b[r + 1..].iter().take_while(|&&c| c == b'#').count();
            let open = r + 1 + hashes + 1;
            let close_pat: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let close = open
                + b[open..]
                    .windows(close_pat.len())
                    .position(|w| w == close_pat.as_slice())
                    .expect("raw string closed");
            literals.push(Literal {
                start: i,
                end: close + close_pat.len(),
                value: src[open..close].to_string(),
            });
            blank(&mut code, open, close);
            i = close + close_pat.len();
        } else if b[i] == b'"' {
            let start = if i > 0 && b[i - 1] == b'b' && !(i > 1 && is_ident(b[i - 2])) {
                i - 1
            } else {
                i
            };
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                let c = src[j..].chars().next().expect("string closed");
                match c {
                    '"' => break,
                    '\\' => {
                        let e = b[j + 1];
                        j += 2;
                        match e {
                            b'n' => value.push('\n'),
                            b't' => value.push('\t'),
                            b'r' => value.push('\r'),
                            b'0' => value.push('\0'),
                            b'\\' => value.push('\\'),
                            b'"' => value.push('"'),
                            b'\'' => value.push('\''),
                            b'x' => {
                                let v = u8::from_str_radix(&src[j..j + 2], 16).unwrap();
                                value.push(char::from(v));
                                j += 2;
                            }
                            b'u' => {
                                let close = j + src[j..].find('}').unwrap();
                                let v = u32::from_str_radix(&src[j + 1..close], 16).unwrap();
                                value.push(char::from_u32(v).unwrap());
                                j = close + 1;
                            }
                            b'\n' | b'\r' => {
                                while j < b.len() && b[j].is_ascii_whitespace() {
                                    j += 1;
                                }
                            }
                            other => panic!("unknown escape \\{}", char::from(other)),
                        }
                    }
                    c => {
                        value.push(c);
                        j += c.len_utf8();
                    }
                }
            }
            literals.push(Literal {
                start,
                end: j + 1,
                value,
            });
            blank(&mut code, i + 1, j);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let close = i + 3 + b[i + 3..].iter().position(|&c| c == b'\'').unwrap();
                blank(&mut code, i + 1, close);
                i = close + 1;
            } else {
                let c = src[i + 1..].chars().next().unwrap_or(' ');
                if b.get(i + 1 + c.len_utf8()) == Some(&b'\'') {
                    blank(&mut code, i + 1, i + 1 + c.len_utf8());
                    i += 2 + c.len_utf8();
                } else {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    Lexed { code, literals }
}

/// The index of the bracket closing the one at `open`.
fn closing(code: &[u8], open: usize) -> usize {
    let (o, c) = match code[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        b'<' => (b'<', b'>'),
        other => panic!("no bracket: {}", char::from(other)),
    };
    let mut depth = 0;
    for (k, &x) in code[open..].iter().enumerate() {
        if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return open + k;
            }
        }
    }
    panic!("bracket at {open} not closed");
}

fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(code: &[u8], i: usize) -> &str {
    let end = i + code[i..].iter().take_while(|&&c| is_ident(c)).count();
    std::str::from_utf8(&code[i..end]).unwrap()
}

/// Every `word` in `code` standing alone (not inside a longer identifier).
fn words<'a>(code: &'a [u8], word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let w = word.as_bytes();
    (0..code.len().saturating_sub(w.len() - 1)).filter(move |&i| {
        code[i..].starts_with(w)
            && (i == 0 || !is_ident(code[i - 1]))
            && code.get(i + w.len()).is_none_or(|&c| !is_ident(c))
    })
}

/// Spans of `#[cfg(test)] mod x { .. }` blocks.
fn test_modules(code: &[u8]) -> Vec<(usize, usize)> {
    let pat = b"#[cfg(test)]";
    let mut out = Vec::new();
    for i in 0..code.len() {
        if !code[i..].starts_with(pat) {
            continue;
        }
        let mut j = skip_ws(code, i + pat.len());
        while code[j] == b'#' {
            j = skip_ws(code, closing(code, j + 1) + 1);
        }
        for vis in ["pub(crate)", "pub(super)", "pub"] {
            if code[j..].starts_with(vis.as_bytes()) {
                j = skip_ws(code, j + vis.len());
                break;
            }
        }
        if code[j..].starts_with(b"mod ") {
            let j = skip_ws(code, j + 4);
            let j = skip_ws(code, j + ident_at(code, j).len());
            if code[j] == b'{' {
                out.push((i, closing(code, j)));
            }
        }
    }
    out
}

/// Each function: (name, start of its body, end of its body).
fn functions(code: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for i in words(code, "fn") {
        let j = skip_ws(code, i + 2);
        let name = ident_at(code, j).to_string();
        if name.is_empty() {
            continue; // `fn(..)` types
        }
        let Some(paren) = code[j..].iter().position(|&c| c == b'(').map(|p| j + p) else {
            continue;
        };
        let after = closing(code, paren);
        let Some(body) = code[after..]
            .iter()
            .position(|&c| c == b'{' || c == b';')
            .map(|p| after + p)
        else {
            continue;
        };
        if code[body] == b'{' {
            out.push((name, body, closing(code, body)));
        }
    }
    out
}

/// The innermost function whose body holds `at`.
fn function_at(fns: &[(String, usize, usize)], at: usize) -> &str {
    fns.iter()
        .filter(|(_, s, e)| *s <= at && at <= *e)
        .max_by_key(|(_, s, _)| *s)
        .map_or("", |(n, _, _)| n)
}

/// The binds chained from `i` (just after a statement's call, or at a
/// `.bind(`), and whether the chain ends by running it.
fn chain(code: &[u8], mut i: usize) -> (usize, bool, usize) {
    let mut binds = 0;
    loop {
        i = skip_ws(code, i);
        if code.get(i) != Some(&b'.') {
            return (binds, false, i);
        }
        let m = ident_at(code, i + 1);
        if m == "bind" {
            binds += 1;
            i = closing(code, skip_ws(code, i + 5)) + 1;
        } else if RUNS.contains(&m) {
            return (binds, true, i);
        } else if m == "persistent" {
            i = closing(code, skip_ws(code, i + 1 + m.len())) + 1;
        } else {
            return (binds, false, i);
        }
    }
}

/// Whether a literal reads like SQL.
fn looks_like_sql(s: &str) -> bool {
    let first = s
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .next()
        .unwrap_or("");
    SQL_WORDS.contains(&first)
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_of(src: &str, at: usize) -> usize {
    src[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

// ---- the scan -------------------------------------------------------------

/// A SQL text of a `Backend::X =>` arm: its line, backend, text.
type Arm = (usize, On, String);

/// Arms `Backend::X => "SQL"` (or `=> { "SQL" }`) in `func` of a file.
fn arms(src: &str, lexed: &Lexed, fns: &[(String, usize, usize)], func: &str) -> Vec<Arm> {
    let mut out = Vec::new();
    for lit in &lexed.literals {
        if function_at(fns, lit.start) != func || !looks_like_sql(&lit.value) {
            continue;
        }
        let before = String::from_utf8_lossy(&lexed.code[..lit.start]);
        let before = before.trim_end().trim_end_matches('{').trim_end();
        let on = if before.ends_with("Backend::Sqlite =>") {
            On::Sqlite
        } else if before.ends_with("Backend::Postgres =>") {
            On::Postgres
        } else {
            On::Both
        };
        out.push((line_of(src, lit.start), on, lit.value.clone()));
    }
    out
}

/// Scans one file. `arm_texts` finds the arms of another file's function.
fn scan_file(
    file: &str,
    src: &str,
    rules: &Rules,
    used: &mut BTreeSet<String>,
    arm_texts: &dyn Fn(&str, &str) -> Vec<Arm>,
    scan: &mut Scan,
) {
    let lexed = lex(src);
    let code = &lexed.code;
    let tests = test_modules(code);
    let in_tests = |at: usize| tests.iter().any(|(s, e)| *s <= at && at <= *e);
    let fns = functions(code);
    let literal_in = |from: usize, to: usize| {
        lexed
            .literals
            .iter()
            .filter(move |l| l.start >= from && l.end <= to)
    };
    // Spans of the arguments of every statement call, for the literal check.
    let mut arg_spans: Vec<(usize, usize)> = Vec::new();
    // Statements of the function that are not run where they are built.
    let mut unfinished: Vec<usize> = Vec::new();

    // Calls by a bare name (`use sqlx::query;`) would slip past the scan.
    for name in QUERY_FNS {
        for i in words(code, name) {
            let before = String::from_utf8_lossy(&code[..i]);
            let before = before.trim_end();
            let after = skip_ws(code, i + name.len());
            let is_call = code.get(after) == Some(&b'(') || code[after..].starts_with(b"::<");
            if is_call
                && !in_tests(i)
                && !before.ends_with("sqlx::")
                && !before.ends_with('.')
                && !before.ends_with("fn")
            {
                scan.errors.push(format!(
                    "{file}:{}: `{name}(..)` called by a bare name: write `sqlx::{name}` so \
                     this scan sees the statement",
                    line_of(src, i)
                ));
            }
        }
    }

    for i in words(code, "sqlx") {
        if in_tests(i) || !code[i + 4..].starts_with(b"::") {
            continue;
        }
        let name = ident_at(code, i + 6);
        if !QUERY_FNS.contains(&name) {
            continue;
        }
        let mut j = skip_ws(code, i + 6 + name.len());
        if code[j..].starts_with(b"::<") {
            j = skip_ws(code, closing(code, j + 2) + 1);
        }
        if code.get(j) != Some(&b'(') {
            continue; // a path (`use sqlx::query;`), not a call
        }
        let close = closing(code, j);
        arg_spans.push((j, close));
        let line = line_of(src, i);
        let func = function_at(&fns, i).to_string();
        let arg = collapse(std::str::from_utf8(&code[j + 1..close]).unwrap());
        // Without rustfmt's trailing comma.
        let arg_src = collapse(&src[j + 1..close])
            .trim_end_matches(',')
            .trim_end()
            .to_string();
        // The literal, alone or as `sql(conn, "...")`.
        let lits: Vec<&Literal> = literal_in(j, close).collect();
        let text = if lits.len() == 1 && arg_src == collapse(&src[lits[0].start..lits[0].end]) {
            Some((lits[0].value.clone(), false))
        } else if arg.starts_with("sql(") && lits.len() == 1 && {
            let rest: String = src[lits[0].end..close].split_whitespace().collect();
            rest == ")" || rest == ",)"
        } {
            Some((lits[0].value.clone(), true))
        } else {
            None
        };
        let (own, runs, _) = chain(code, close + 1);
        let Some((text, translated)) = text else {
            let entry = rules
                .dynamic
                .iter()
                .find(|d| d.0 == file && d.1 == func && arg_src.starts_with(&collapse(d.2)));
            match entry {
                None => scan.errors.push(format!(
                    "{file}:{line} ({func}): a statement built at run time (`{arg_src}`): \
                     review it and name it in DYNAMIC"
                )),
                Some(d) => {
                    used.insert(format!("dynamic {} {} {}", d.0, d.1, d.2));
                    scan.dynamic.push(format!("{file}:{line} ({func})"));
                    if let (Some((af, afn)), Some(binds)) = (d.3, d.4) {
                        let found = arm_texts(af, afn);
                        if found.is_empty() {
                            scan.errors.push(format!(
                                "{file}:{line}: DYNAMIC says its text is in {af} {afn}, which \
                                 has no SQL"
                            ));
                        }
                        for (l, on, text) in found {
                            scan.statements.push(Statement {
                                file: af.to_string(),
                                line: l,
                                func: afn.to_string(),
                                text,
                                translated: false,
                                binds,
                                counted: true,
                                on,
                            });
                        }
                    }
                }
            }
            continue;
        };
        let on = match rules
            .only
            .iter()
            .find(|o| o.0 == file && o.1 == func && text.contains(o.2))
        {
            Some(o) => {
                used.insert(format!("only {} {} {}", o.0, o.1, o.2));
                o.3
            }
            None => On::Both,
        };
        if !runs {
            unfinished.push(scan.statements.len());
        }
        scan.statements.push(Statement {
            file: file.to_string(),
            line,
            func,
            text,
            translated,
            binds: own,
            counted: runs,
            on,
        });
    }

    // Statements bound further elsewhere in their function.
    for k in unfinished {
        let st = &scan.statements[k];
        let cont = rules
            .continued
            .iter()
            .find(|c| c.0 == file && c.1 == st.func);
        let Some(c) = cont else {
            scan.errors.push(format!(
                "{}: the statement is not run in the chain that binds it, so its binds \
                 cannot be counted: run it there, or name the variable that gets its last \
                 binds in CONTINUED",
                st.at()
            ));
            continue;
        };
        used.insert(format!("continued {} {} {}", c.0, c.1, c.2));
        let Some((_, s, e)) = fns.iter().find(|f| f.0 == c.1) else {
            continue;
        };
        let pat = format!("{}.bind", c.2);
        let starts: Vec<usize> = words(&code[..*e], c.2)
            .filter(|&p| p > *s && code[p..].starts_with(pat.as_bytes()))
            .collect();
        if starts.len() != 1 {
            scan.errors.push(format!(
                "{}: CONTINUED names `{pat}`, found {} times in {} (want once)",
                st.at(),
                starts.len(),
                c.1
            ));
            continue;
        }
        let (more, runs, _) = chain(code, starts[0] + c.2.len());
        if !runs {
            scan.errors
                .push(format!("{}: `{pat}..` does not run it", st.at()));
        }
        scan.statements[k].binds += more;
        scan.statements[k].counted = runs;
    }

    // Anything else that reads like SQL.
    for lit in &lexed.literals {
        if in_tests(lit.start)
            || !looks_like_sql(&lit.value)
            || arg_spans
                .iter()
                .any(|(s, e)| *s <= lit.start && lit.end <= *e)
        {
            continue;
        }
        let func = function_at(&fns, lit.start);
        let piece = rules
            .dynamic
            .iter()
            .find(|d| (d.0 == file && d.1 == func && d.3.is_none()) || d.3 == Some((file, func)));
        let not = rules
            .not_statements
            .iter()
            .find(|n| n.0 == file && n.1 == func);
        if let Some(n) = not {
            used.insert(format!("not {} {}", n.0, n.1));
        } else if piece.is_none() {
            scan.errors.push(format!(
                "{file}:{} ({func}): SQL outside any statement call this scan knows: {:?}: \
                 run it through sqlx::query* (or review it in DYNAMIC / NOT_STATEMENTS)",
                line_of(src, lit.start),
                collapse(&lit.value)
            ));
        }
    }
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Scans `files` (relative name, source) with `rules`; every check that
/// needs no database.
fn scan_sources(files: &[(String, String)], rules: &Rules) -> Scan {
    let mut scan = Scan::default();
    let mut used = BTreeSet::new();
    let arm_texts = |file: &str, func: &str| -> Vec<Arm> {
        files
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, src)| {
                let lexed = lex(src);
                let fns = functions(&lexed.code);
                arms(src, &lexed, &fns, func)
            })
            .unwrap_or_default()
    };
    for (file, src) in files {
        scan_file(file, src, rules, &mut used, &arm_texts, &mut scan);
    }
    // Stale review entries.
    let mut want: Vec<String> = Vec::new();
    want.extend(
        rules
            .dynamic
            .iter()
            .map(|d| format!("dynamic {} {} {}", d.0, d.1, d.2)),
    );
    want.extend(
        rules
            .only
            .iter()
            .map(|o| format!("only {} {} {}", o.0, o.1, o.2)),
    );
    want.extend(
        rules
            .continued
            .iter()
            .map(|c| format!("continued {} {} {}", c.0, c.1, c.2)),
    );
    want.extend(
        rules
            .not_statements
            .iter()
            .map(|n| format!("not {} {}", n.0, n.1)),
    );
    for w in want {
        if !used.contains(&w) {
            scan.errors.push(format!(
                "review entry `{w}` matches nothing any more: remove it"
            ));
        }
    }
    // Binds against placeholders.
    for st in scan.statements.iter().filter(|s| s.counted) {
        if let Err(e) = placeholders_match(&st.text, st.binds) {
            scan.errors
                .push(format!("{}: {e}\n    {}", st.at(), collapse(&st.text)));
        }
    }
    scan
}

/// The `$N` placeholders of a statement (outside its quoted strings).
fn placeholders(sql: &str) -> std::result::Result<BTreeSet<usize>, String> {
    let b = sql.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\'' && b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                    } else if b[i] == b'\'' {
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' => {
                let digits: String = sql[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                match digits.parse() {
                    Ok(n) => {
                        out.insert(n);
                    }
                    Err(_) => return Err("a `$` that is not a `$N` placeholder".into()),
                }
                i += digits.len();
            }
            b'?' => return Err("a `?` placeholder: write `$N`".into()),
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

fn placeholders_match(sql: &str, binds: usize) -> std::result::Result<(), String> {
    let used = placeholders(sql)?;
    let want: BTreeSet<usize> = (1..=binds).collect();
    if used == want {
        Ok(())
    } else {
        Err(format!(
            "binds {binds} value(s) but uses placeholders {:?}",
            used.iter().map(|n| format!("${n}")).collect::<Vec<_>>()
        ))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The scan of the program's source (`src/`).
fn scan_tree() -> Scan {
    let files: Vec<(String, String)> = rust_files(&root().join("src"))
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, fs::read_to_string(&p).unwrap())
        })
        .collect();
    scan_sources(&files, &RULES)
}

// ---- the tests ------------------------------------------------------------

#[test]
fn every_statement_binds_the_placeholders_it_uses() {
    let scan = scan_tree();
    let mut per_file: BTreeMap<&str, usize> = BTreeMap::new();
    for st in &scan.statements {
        *per_file.entry(&st.file).or_default() += 1;
        println!(
            "{:<28} {:>4} {:<22} {:?} binds {}: {}",
            st.file,
            st.line,
            st.func,
            st.on,
            st.binds,
            collapse(&st.text).chars().take(70).collect::<String>()
        );
    }
    println!("statements per file: {per_file:?}");
    println!(
        "{} statements, {} reviewed dynamic calls: {:?}",
        scan.statements.len(),
        scan.dynamic.len(),
        scan.dynamic
    );
    assert!(
        scan.errors.is_empty(),
        "{} problem(s):\n{}",
        scan.errors.len(),
        scan.errors.join("\n")
    );
    // A scan that found nothing would pass everything.
    assert!(scan.statements.len() > 100, "{}", scan.statements.len());
    assert!(per_file.len() >= 15, "{per_file:?}");
}

/// Prepares each statement on `conn`; returns the failures.
async fn prepare_all<C>(conn: &mut C, backend: Backend, statements: &[Statement]) -> Vec<String>
where
    for<'c> &'c mut C: Executor<'c>,
{
    let mut failures = Vec::new();
    for st in statements {
        let text = st.text_for(backend);
        match conn
            .prepare(AssertSqlSafe(text.clone()).into_sql_str())
            .await
        {
            Err(e) => failures.push(format!("{}: {e}\n    {}", st.at(), collapse(&text))),
            Ok(prepared) => {
                let n = match prepared.parameters() {
                    Some(Either::Left(types)) => Some(types.len()),
                    Some(Either::Right(n)) => Some(n),
                    None => None,
                };
                if n.is_some_and(|n| n != st.binds) {
                    failures.push(format!(
                        "{}: {} prepares with {n:?} parameter(s), the code binds {}\n    {}",
                        st.at(),
                        backend.as_str(),
                        st.binds,
                        collapse(&text)
                    ));
                }
            }
        }
    }
    failures
}

fn for_backend(scan: &Scan, on: On) -> Vec<Statement> {
    scan.statements
        .iter()
        .filter(|s| s.on == On::Both || s.on == on)
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_statement_prepares_on_sqlite() {
    let scan = scan_tree();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    Ledger::open(&path).await.unwrap().close().await;
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    let statements = for_backend(&scan, On::Sqlite);
    let failures = prepare_all(&mut conn, Backend::Sqlite, &statements).await;
    assert!(
        failures.is_empty(),
        "{} of {} statements do not prepare on SQLite:\n{}",
        failures.len(),
        statements.len(),
        failures.join("\n")
    );
}

#[tokio::test]
#[cfg_attr(
    stoksync_no_pg,
    ignore = "needs PostgreSQL: eval \"$(.ci/pg-start)\" first (CI runs it)"
)]
async fn every_statement_prepares_on_postgres() {
    let url = pg::fresh_database("sql_statements").await;
    Ledger::connect(&Database::Postgres {
        url: url.clone(),
        password: None,
    })
    .await
    .unwrap()
    .close()
    .await;
    let scan = scan_tree();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let statements = for_backend(&scan, On::Postgres);
    let failures = prepare_all(&mut conn, Backend::Postgres, &statements).await;
    assert!(
        failures.is_empty(),
        "{} of {} statements do not prepare on PostgreSQL:\n{}",
        failures.len(),
        statements.len(),
        failures.join("\n")
    );
}

/// The scan itself: what it must catch, on a made-up file.
#[test]
fn the_scan_catches_wrong_binds_and_unreviewed_sql() {
    let src = r###"
fn discover(p: &str) {
    // "SELECT in a comment" is no statement
    sqlx::query(
        "UPDATE listings SET confirmed_qty = $1, confirmed_at_ms = $2
         WHERE provider = $1 AND listing_id = $2 AND variant_id = $3",
    )
    .bind(1).bind(2).bind(p).bind("l").bind("v")
    .execute(&mut *tx);
    sqlx::query_scalar::<_, i64>(sql(
        conn,
        "SELECT COUNT(*) FROM stock WHERE sku IN (SELECT value FROM json_each($1))",
    ))
    .bind(list)
    .fetch_one(&mut *conn);
    let s = 'x';
    let raw = r#"SELECT "a" FROM t WHERE x = $1"#;
    sqlx::query(raw).bind(1).execute(c);
    let built = sqlx::query("SELECT 1 WHERE $1 = $2").bind(1);
    query_as("SELECT 2");
}

#[cfg(test)]
mod tests {
    fn t() { sqlx::query("DELETE FROM everything WHERE $9").execute(c); }
}
"###;
    let no_rules = Rules {
        dynamic: &[],
        only: &[],
        continued: &[],
        not_statements: &[("src/x.rs", "gone", "a stale entry")],
    };
    let scan = scan_sources(&[("src/x.rs".into(), src.into())], &no_rules);
    let texts: Vec<(usize, usize, bool)> = scan
        .statements
        .iter()
        .map(|s| (s.line, s.binds, s.translated))
        .collect();
    assert_eq!(texts, [(4, 5, false), (10, 1, true), (19, 1, false)]);
    assert!(
        scan.statements[1]
            .text_for(Backend::Postgres)
            .contains("jsonb_array_elements_text")
    );
    let errors = scan.errors.join("\n");
    for want in [
        // discovery's statement of issue 19
        "src/x.rs:4 (discover): binds 5 value(s) but uses placeholders [\"$1\", \"$2\", \"$3\"]",
        // the raw string, run by name
        "src/x.rs:18 (discover): a statement built at run time (`raw`)",
        "src/x.rs:17 (discover): SQL outside any statement call",
        // run elsewhere: binds unknown
        "src/x.rs:19 (discover): the statement is not run in the chain",
        "src/x.rs:20: `query_as(..)` called by a bare name",
        "src/x.rs:20 (discover): SQL outside any statement call",
        "review entry `not src/x.rs gone` matches nothing",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
    assert_eq!(scan.errors.len(), 7, "{errors}");
    assert_eq!(
        placeholders("SELECT '$1 isn''t one', $2 FROM t WHERE a = $1").unwrap(),
        BTreeSet::from([1, 2])
    );
}
