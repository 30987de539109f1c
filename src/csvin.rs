//! CSV files from the ERP and the operator: stock counts (`sku,quantity`)
//! and listing mappings (`sku,provider,listing_id,variant_id`). Every bad
//! row is reported with its line number; a file with any bad row yields
//! nothing, so nothing is half-imported. The exports write the same two
//! shapes, quoted where a field needs it, so an export imports back as it
//! was.

use crate::domain::{ListingRef, ProviderName};
use crate::ledger::{BundleRow, LinkRow, RuleRow};
use crate::providers::validate_listing;
use crate::rules::{Field, RuleSet};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct CsvErrors {
    pub file: String,
    pub errors: Vec<(usize, String)>,
}

impl CsvErrors {
    /// The errors of the file at `path`, in line order.
    pub fn new(path: &Path, mut errors: Vec<(usize, String)>) -> CsvErrors {
        errors.sort_by_key(|e| e.0);
        CsvErrors {
            file: path.display().to_string(),
            errors,
        }
    }

    fn render(&self) -> String {
        let mut s = format!(
            "{}: {} bad row(s), nothing imported",
            self.file,
            self.errors.len()
        );
        for (line, msg) in &self.errors {
            if *line == 0 {
                s.push_str(&format!("\n  {msg}"));
            } else {
                s.push_str(&format!("\n  line {line}: {msg}"));
            }
        }
        s
    }
}

type Rows = Vec<(usize, Vec<String>)>;

/// Errors of a file, each with its line.
pub type LineErrors = Vec<(usize, String)>;

/// The ledger's rule for a SKU (`ledger::stock::check_sku`), checked here
/// too so a refused SKU is reported with its line. The CSV reader trims
/// ASCII spaces only; a no-break space or a control character (a quoted
/// line break) would otherwise pass here and fail the import unnamed.
fn sku_problem(sku: &str) -> Option<String> {
    if sku.is_empty() {
        Some("sku is empty".to_string())
    } else if sku.trim() != sku || sku.chars().any(char::is_control) {
        Some(format!(
            "SKU {sku:?} has surrounding white space or control characters"
        ))
    } else {
        None
    }
}

/// A `provider` cell: one of the four names.
fn provider_cell(cell: &str) -> Result<ProviderName, String> {
    ProviderName::parse(cell).ok_or_else(|| {
        format!("provider `{cell}` is not one of bazaardan, stokdurumu, eticaret, pazarsync")
    })
}

/// Rows of a CSV file with the given header, each with its line number,
/// and the lines that are not rows of that shape. `Err` only when the file
/// cannot be read or its header is wrong.
fn rows(path: &Path, header: &[&str]) -> Result<(Rows, Vec<(usize, String)>), CsvErrors> {
    let fail = |errors| CsvErrors {
        file: path.display().to_string(),
        errors,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(vec![(0, format!("cannot read: {e}"))]))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        fail(vec![(
            line,
            format!(
                "byte 0x{:02X} is not UTF-8 text; save the file as UTF-8",
                bytes[at]
            ),
        )])
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let sep = separator(text);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(sep)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let got: Vec<String> = rdr
        .headers()
        .map_err(|e| fail(vec![(1, e.to_string())]))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if got != header {
        return Err(fail(vec![(
            1,
            format!(
                "header must be `{}` (or `{}`), found `{}`",
                header.join(","),
                header.join(";"),
                got.join(&char::from(sep).to_string())
            ),
        )]));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for rec in rdr.records() {
        match rec {
            Ok(r) => {
                let line = r.position().map_or(0, |p| start_line(text, p));
                if r.iter().all(str::is_empty) {
                    continue;
                }
                out.push((line, r.iter().map(str::to_string).collect()));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| start_line(text, p));
                errors.push((line, e.to_string()));
            }
        }
    }
    Ok((out, errors))
}

/// The separator of a file, read from its header line: `;` when it has
/// more semicolons than commas (what a spreadsheet writes in a locale whose
/// decimal mark is a comma, Turkish among them), else `,`.
fn separator(text: &str) -> u8 {
    let header = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let count = |c: char| header.chars().filter(|&x| x == c).count();
    if count(';') > count(',') { b';' } else { b',' }
}

/// The line a record starts on. csv gives the position where reading it
/// began: before the blank lines it skipped, and with a CRLF's `\n` not yet
/// counted. The line breaks from there to the record are added.
fn start_line(text: &str, pos: &csv::Position) -> usize {
    let from = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    let skipped = text
        .as_bytes()
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|&&b| b == b'\n')
        .count();
    pos.line() as usize + skipped
}

/// `sku,quantity`: an ERP count per SKU (a whole number, 0 or more).
pub fn read_stock(path: &Path) -> Result<Vec<(String, i64)>, CsvErrors> {
    let (rows, mut errors) = rows(path, &["sku", "quantity"])?;
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, r) in rows {
        let (sku, qty) = (&r[0], &r[1]);
        if let Some(problem) = sku_problem(sku) {
            errors.push((line, problem));
            continue;
        }
        if let Some(first) = seen.insert(sku.clone(), line) {
            errors.push((line, format!("SKU `{sku}` already given on line {first}")));
            continue;
        }
        match qty.parse::<i64>() {
            Ok(q) if q >= 0 => out.push((sku.clone(), q)),
            Ok(q) => errors.push((line, format!("quantity {q} for `{sku}` is negative"))),
            Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                errors.push((line, format!("quantity `{qty}` for `{sku}` is too large")))
            }
            Err(e) if *e.kind() == std::num::IntErrorKind::NegOverflow => {
                errors.push((line, format!("quantity `{qty}` for `{sku}` is negative")))
            }
            Err(_) => errors.push((
                line,
                format!("quantity `{qty}` for `{sku}` is not a whole number"),
            )),
        }
    }
    finish(path, out, errors)
}

/// `sku,provider,listing_id,variant_id` (variant_id may be empty), each row
/// with its line.
pub fn read_mappings(path: &Path) -> Result<Vec<LinkRow>, CsvErrors> {
    let (out, errors) = parse_mappings(path)?;
    finish(path, out, errors)
}

/// The rows of a mapping file that are well formed, and the bad rows'
/// errors: the ledger's own checks can then be reported beside them.
/// `Err` only when the file cannot be read or its header is wrong.
pub fn parse_mappings(path: &Path) -> Result<(Vec<LinkRow>, LineErrors), CsvErrors> {
    let (rows, mut errors) = rows(path, &["sku", "provider", "listing_id", "variant_id"])?;
    let mut out = Vec::new();
    let mut seen: HashMap<ListingRef, usize> = HashMap::new();
    for (line, r) in rows {
        let sku = &r[0];
        if let Some(problem) = sku_problem(sku) {
            errors.push((line, problem));
            continue;
        }
        let provider = match provider_cell(&r[1]) {
            Ok(p) => p,
            Err(e) => {
                errors.push((line, e));
                continue;
            }
        };
        let listing = ListingRef {
            provider,
            listing_id: r[2].clone(),
            variant_id: r[3].clone(),
        };
        if let Err(e) = validate_listing(&listing) {
            errors.push((line, e));
            continue;
        }
        if let Some(first) = seen.insert(listing.clone(), line) {
            errors.push((
                line,
                format!("listing {listing} already mapped on line {first}"),
            ));
            continue;
        }
        out.push(LinkRow {
            line,
            sku: sku.clone(),
            listing,
        });
    }
    Ok((out, errors))
}

/// `sku,quantity` rows as `stock import` reads them.
pub fn write_stock<'a>(
    out: impl std::io::Write,
    rows: impl IntoIterator<Item = (&'a str, i64)>,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["sku", "quantity"])?;
    for (sku, qty) in rows {
        w.write_record([sku, &qty.to_string()])?;
    }
    w.flush()
}

/// `sku,provider,listing_id,variant_id` rows as `mapping import` reads them.
pub fn write_mappings<'a>(
    out: impl std::io::Write,
    rows: impl IntoIterator<Item = (&'a str, &'a ListingRef)>,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["sku", "provider", "listing_id", "variant_id"])?;
    for (sku, l) in rows {
        w.write_record([
            sku,
            l.provider.as_str(),
            l.listing_id.as_str(),
            l.variant_id.as_str(),
        ])?;
    }
    w.flush()
}

/// `sku,provider,safety_stock,max_quantity,percent,zero_below,frozen`: a
/// SKU's rule on one provider. An empty cell inherits that field; a row
/// with every field empty removes the SKU's rule for the provider.
pub fn read_rules(path: &Path) -> Result<Vec<RuleRow>, CsvErrors> {
    const COLUMNS: [(usize, Field); 5] = [
        (2, Field::SafetyStock),
        (3, Field::MaxQuantity),
        (4, Field::Percent),
        (5, Field::ZeroBelow),
        (6, Field::Frozen),
    ];
    let (rows, mut errors) = rows(
        path,
        &[
            "sku",
            "provider",
            "safety_stock",
            "max_quantity",
            "percent",
            "zero_below",
            "frozen",
        ],
    )?;
    let mut out = Vec::new();
    let mut seen: HashMap<(String, ProviderName), usize> = HashMap::new();
    'rows: for (line, r) in rows {
        let sku = &r[0];
        if let Some(problem) = sku_problem(sku) {
            errors.push((line, problem));
            continue;
        }
        let provider = match provider_cell(&r[1]) {
            Ok(p) => p,
            Err(e) => {
                errors.push((line, e));
                continue;
            }
        };
        let mut set = RuleSet::default();
        for (col, f) in COLUMNS {
            let cell = r[col].as_str();
            if cell.is_empty() {
                continue;
            }
            let value = match f {
                Field::Frozen => match cell.to_ascii_lowercase().as_str() {
                    "true" => Ok(1),
                    "false" => Ok(0),
                    _ => Err(format!("frozen `{cell}` is not true or false")),
                },
                _ => cell
                    .parse::<i64>()
                    .map_err(|_| format!("{f} `{cell}` is not a whole number"))
                    .and_then(|v| f.check(v).map(|()| v)),
            };
            match value {
                Ok(v) => set.set(f, Some(v)),
                Err(e) => {
                    errors.push((line, format!("{e} (SKU `{sku}`, {provider})")));
                    continue 'rows;
                }
            }
        }
        if let Some(first) = seen.insert((sku.clone(), provider), line) {
            errors.push((
                line,
                format!("SKU `{sku}` on {provider} already given on line {first}"),
            ));
            continue;
        }
        out.push(RuleRow {
            line,
            sku: sku.clone(),
            provider,
            set,
        });
    }
    finish(path, out, errors)
}

/// `bundle_sku,component_sku,quantity`: the units of a component in one
/// bundle (a whole number, 1 or more).
pub fn read_bundles(path: &Path) -> Result<Vec<BundleRow>, CsvErrors> {
    let (rows, mut errors) = rows(path, &["bundle_sku", "component_sku", "quantity"])?;
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (line, r) in rows {
        let (bundle, component, qty) = (&r[0], &r[1], &r[2]);
        if let Some(problem) = sku_problem(bundle).or_else(|| sku_problem(component)) {
            errors.push((line, problem));
            continue;
        }
        if bundle == component {
            errors.push((line, format!("bundle `{bundle}` cannot contain itself")));
            continue;
        }
        let quantity = match qty.parse::<i64>() {
            Ok(q) if q > 0 => q,
            Ok(0) => {
                errors.push((
                    line,
                    format!("quantity of `{component}` in `{bundle}` is 0: a component is at least 1 unit"),
                ));
                continue;
            }
            Ok(q) => {
                errors.push((
                    line,
                    format!("quantity {q} of `{component}` in `{bundle}` is negative"),
                ));
                continue;
            }
            Err(_) => {
                errors.push((
                    line,
                    format!(
                        "quantity `{qty}` of `{component}` in `{bundle}` is not a whole number"
                    ),
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert((bundle.clone(), component.clone()), line) {
            errors.push((
                line,
                format!("`{component}` in `{bundle}` already given on line {first}"),
            ));
            continue;
        }
        out.push(BundleRow {
            line,
            bundle: bundle.clone(),
            component: component.clone(),
            quantity,
        });
    }
    finish(path, out, errors)
}

fn finish<T>(path: &Path, out: Vec<T>, errors: Vec<(usize, String)>) -> Result<Vec<T>, CsvErrors> {
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CsvErrors::new(path, errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn stock_rows_parse_and_bad_rows_name_their_line() {
        let ok = file("\u{feff}sku,quantity\nA,5\n\nB , 0\n");
        assert_eq!(
            read_stock(ok.path()).unwrap(),
            vec![("A".into(), 5), ("B".into(), 0)]
        );

        let bad = file("sku,quantity\nA,5\nB,-2\nC,1.5\nA,3\n,4\nD\n");
        let err = read_stock(bad.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7], "{err}");
        assert!(
            err.to_string()
                .contains("line 3: quantity -2 for `B` is negative"),
            "{err}"
        );
        assert!(err.to_string().contains("already given on line 2"), "{err}");
    }

    #[test]
    fn line_numbers_count_blank_lines_and_crlf() {
        for text in [
            "sku,quantity\nA,5\n\n\nB,-1\n\nC,x\n",
            "sku,quantity\r\nA,5\r\n\r\n\r\nB,-1\r\n\r\nC,x\r\n",
            "\u{feff}sku,quantity\nA,5\r\n\n\r\nB,-1\n\r\nC,x",
        ] {
            let f = file(text);
            let err = read_stock(f.path()).unwrap_err();
            let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
            assert_eq!(lines, vec![5, 7], "{text:?}: {err}");
        }
        let f =
            file("sku,provider,listing_id,variant_id\r\n\r\nA,ebay,1,\r\n\r\nB,bazaardan,x,\r\n");
        let err = read_mappings(f.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![3, 5], "{err}");
    }

    #[test]
    fn wrong_header_is_refused() {
        for (text, found) in [
            ("sku,qty\nA,5\n", "found `sku,qty`"),
            ("sku;adet\nA;5\n", "found `sku;adet`"),
        ] {
            let err = read_stock(file(text).path()).unwrap_err().to_string();
            assert!(
                err.contains("line 1: header must be `sku,quantity` (or `sku;quantity`)")
                    && err.contains(found),
                "{err}"
            );
        }
    }

    #[test]
    fn a_spreadsheet_with_semicolons_is_read() {
        // As a spreadsheet in a Turkish locale saves it: `;`, CRLF, a BOM,
        // a comma and a quote inside quoted SKUs.
        let f = file(
            "\u{feff}SKU;Quantity\r\n\"ÇANTA,büyük\";7\r\n\"KALEM \"\"mavi\"\"\";0\r\nSİLGİ;3\r\n",
        );
        assert_eq!(
            read_stock(f.path()).unwrap(),
            vec![
                ("ÇANTA,büyük".into(), 7),
                ("KALEM \"mavi\"".into(), 0),
                ("SİLGİ".into(), 3)
            ]
        );
        let bad = file("sku;quantity\nA;5\nB;-1\nC;1,5\n");
        let err = read_stock(bad.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![3, 4], "{err}");
        let maps =
            file("sku;provider;listing_id;variant_id\nA;bazaardan;356;778\nB;eticaret;KOD,1;\n");
        let rows = read_mappings(maps.path()).unwrap();
        assert_eq!(rows[1].listing.listing_id, "KOD,1");
        assert_eq!(rows[0].listing.variant_id, "778");
    }

    #[test]
    fn an_export_reads_back_as_it_was() {
        let rows = [
            ("ÇANTA,büyük", 7),
            ("KALEM \"mavi\"", 0),
            ("\"ŞİŞE", -2),
            ("x;y", 1),
        ];
        let mut out = Vec::new();
        write_stock(&mut out, rows.iter().copied()).unwrap();
        let f = file(std::str::from_utf8(&out).unwrap());
        // A negative count is written, and refused by the importer.
        let err = read_stock(f.path()).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(err.to_string().contains("line 4: quantity -2"), "{err}");
        let good: Vec<_> = rows.iter().filter(|r| r.1 >= 0).copied().collect();
        let mut out = Vec::new();
        write_stock(&mut out, good.iter().copied()).unwrap();
        let f = file(std::str::from_utf8(&out).unwrap());
        let back = read_stock(f.path()).unwrap();
        let want: Vec<(String, i64)> = good.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn mapping_rows_are_checked_per_provider() {
        let f = file(
            "sku,provider,listing_id,variant_id\nA,bazaardan,356,778\nB,bazaardan,357,\nC,amazon,1,\nD,bazaardan,abc,\nE,bazaardan,356,778\n",
        );
        let err = read_mappings(f.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![4, 5, 6], "{err}");
        let good =
            file("sku,provider,listing_id,variant_id\nA,bazaardan,356,778\n\nB,bazaardan,357,\n");
        let rows = read_mappings(good.path()).unwrap();
        assert_eq!(rows[1].listing.variant_id, "");
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4], "the ledger names rows by these lines");

        // The well-formed rows of a bad file come with its errors.
        let (rows, errors) = parse_mappings(f.path()).unwrap();
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3]);
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn rule_rows_inherit_empty_cells_and_bad_rows_name_their_line() {
        let head = "sku,provider,safety_stock,max_quantity,percent,zero_below,frozen\n";
        let ok = file(&format!(
            "{head}A,eticaret,,5,,,\nA,pazarsync,2,,50,1,TRUE\nB,eticaret,,,,,\n"
        ));
        let rows = read_rules(ok.path()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].set, RuleSet::default().with(Field::MaxQuantity, 5));
        assert_eq!(
            rows[1].set,
            RuleSet::default()
                .with(Field::SafetyStock, 2)
                .with(Field::Percent, 50)
                .with(Field::ZeroBelow, 1)
                .with(Field::Frozen, 1)
        );
        assert!(rows[2].set.is_empty(), "an empty row removes");
        assert_eq!(
            (rows[1].line, rows[1].provider),
            (3, ProviderName::Pazarsync)
        );

        let bad = file(&format!(
            "{head}A,eticaret,,5,,,\nB,etsy,,,,,\nC,eticaret,-1,,,,\nD,eticaret,,,101,,\nE,eticaret,,,,,yes\nF,eticaret,,2.5,,,\nA,eticaret,,,,,\n"
        ));
        let err = read_rules(bad.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8], "{err}");
        let text = err.to_string();
        for needle in [
            "etsy",
            "safety_stock must be 0 or more",
            "percent must be",
            "frozen `yes`",
            "2.5",
            "already given on line 2",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn bundle_rows_refuse_zero_self_and_repeats_by_line() {
        let ok = file("bundle_sku,component_sku,quantity\nSET,KALEM,2\nSET,SILGI,1\n");
        let rows = read_bundles(ok.path()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[0].quantity), (2, 2));
        let bad = file(
            "bundle_sku,component_sku,quantity\nSET,KALEM,0\nSET,SET,1\nSET,SILGI,-1\nSET,A,x\nSET,B,1\nSET,B,2\n",
        );
        let err = read_bundles(bad.path()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 7], "{err}");
        let text = err.to_string();
        for needle in [
            "is 0",
            "cannot contain itself",
            "negative",
            "not a whole number",
            "already given on line 6",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
