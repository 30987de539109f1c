//! What a seller decides per channel: allocation rules. Pure: the planner
//! asks [`Rules::limits`] for a listing's rule and [`show`] for the value,
//! `explain` asks [`Rules::steps`] for the same arithmetic with the source
//! of every number.
//!
//! Three levels, field by field: a SKU's row for the provider (imported by
//! `rules import`, stored in the ledger) overrides `[rules.<provider>]`,
//! which overrides `[sync]` (only `safety_stock` there). An unset field
//! inherits from the level below; a field set nowhere does nothing.
//!
//! Order of application, from what the ledger has available:
//! 1. `safety_stock`: held back, never below 0;
//! 2. `zero_below`: 0 when what is left is N or less;
//! 3. `percent`: that share of what is left, rounded down;
//! 4. `max_quantity`: never more than N.
//!
//! `frozen` listings are never pushed.

use crate::domain::ProviderName;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// A rule's fields, in order of application (`Frozen` last: it stops the push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    SafetyStock,
    ZeroBelow,
    Percent,
    MaxQuantity,
    Frozen,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::SafetyStock,
        Field::ZeroBelow,
        Field::Percent,
        Field::MaxQuantity,
        Field::Frozen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::SafetyStock => "safety_stock",
            Field::ZeroBelow => "zero_below",
            Field::Percent => "percent",
            Field::MaxQuantity => "max_quantity",
            Field::Frozen => "frozen",
        }
    }

    /// Checks a value of this field; `frozen` is 0 or 1.
    pub fn check(self, v: i64) -> Result<(), String> {
        match self {
            Field::Percent if !(0..=100).contains(&v) => Err(format!(
                "percent must be a whole number from 0 to 100, not {v}"
            )),
            Field::Frozen if !(0..=1).contains(&v) => {
                Err(format!("frozen must be true or false, not {v}"))
            }
            _ if v < 0 => Err(format!("{} must be 0 or more, not {v}", self.as_str())),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One level's fields, each set or not (`frozen` as 0/1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RuleSet([Option<i64>; 5]);

impl RuleSet {
    pub fn get(&self, f: Field) -> Option<i64> {
        self.0[f as usize]
    }

    pub fn set(&mut self, f: Field, v: Option<i64>) {
        self.0[f as usize] = v;
    }

    pub fn with(mut self, f: Field, v: i64) -> RuleSet {
        self.set(f, Some(v));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// Where a rule's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The built-in default (safety stock 0).
    Default,
    /// A key of the config file.
    Config { key: String, line: usize },
    /// A row of a `rules import` file (`rules.csv line 4`).
    Csv { row: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::Config { key, line } => write!(f, "config line {line} (`{key}`)"),
            Source::Csv { row } => f.write_str(row),
        }
    }
}

/// A config level: its fields and the line of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigLevel {
    pub set: RuleSet,
    pub lines: [usize; 5],
}

/// The config's rules: `[sync] safety_stock` and `[rules.<provider>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `[sync]`: safety stock only.
    pub base: ConfigLevel,
    pub providers: HashMap<ProviderName, ConfigLevel>,
}

/// A listing's rule, resolved: what the planner needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub safety_stock: i64,
    pub zero_below: Option<i64>,
    pub percent: Option<i64>,
    pub max_quantity: Option<i64>,
    pub frozen: bool,
}

/// One rule applied, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub field: Field,
    pub value: i64,
    pub source: Source,
    /// What the listing would show before and after this rule.
    pub before: i64,
    pub after: i64,
}

impl Rules {
    /// Only `[sync] safety_stock` (tests, and configs without rules).
    pub fn with_safety_stock(n: i64) -> Rules {
        Rules {
            base: ConfigLevel {
                set: RuleSet::default().with(Field::SafetyStock, n),
                lines: [0; 5],
            },
            providers: HashMap::new(),
        }
    }

    /// The `[sync]` safety stock.
    pub fn safety_stock(&self) -> i64 {
        self.base.set.get(Field::SafetyStock).unwrap_or(0)
    }

    /// The value of `f` for a listing of `provider` whose SKU has `sku`
    /// (its row for the provider, if any), with its level.
    fn field(&self, provider: ProviderName, sku: Option<&RuleSet>, f: Field) -> Option<(i64, u8)> {
        if let Some(v) = sku.and_then(|s| s.get(f)) {
            return Some((v, 2));
        }
        if let Some(v) = self.providers.get(&provider).and_then(|l| l.set.get(f)) {
            return Some((v, 1));
        }
        self.base.set.get(f).map(|v| (v, 0))
    }

    /// A listing's rule: field by field, the SKU's row, the provider's
    /// table, `[sync]`.
    pub fn limits(&self, provider: ProviderName, sku: Option<&RuleSet>) -> Limits {
        let get = |f| self.field(provider, sku, f).map(|(v, _)| v);
        Limits {
            safety_stock: get(Field::SafetyStock).unwrap_or(0),
            zero_below: get(Field::ZeroBelow),
            percent: get(Field::Percent),
            max_quantity: get(Field::MaxQuantity),
            frozen: get(Field::Frozen) == Some(1),
        }
    }

    /// The rules a listing's value goes through, in order, each with its
    /// source and what it did (`sku_source`: the SKU row's, e.g.
    /// `rules.csv line 4`). The safety stock is always a step (its default
    /// is 0); the others only when set somewhere.
    pub fn steps(
        &self,
        provider: ProviderName,
        sku: Option<&RuleSet>,
        sku_source: &str,
        available: i64,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut q = available;
        for f in Field::ALL {
            let Some((value, level)) = self.field(provider, sku, f) else {
                if f == Field::SafetyStock {
                    let after = q.max(0);
                    steps.push(Step {
                        field: f,
                        value: 0,
                        source: Source::Default,
                        before: q,
                        after,
                    });
                    q = after;
                }
                continue;
            };
            let source = match level {
                2 => Source::Csv {
                    row: sku_source.to_string(),
                },
                1 => {
                    let l = &self.providers[&provider];
                    Source::Config {
                        key: format!("rules.{provider}.{f}"),
                        line: l.lines[f as usize],
                    }
                }
                _ if self.base.lines[f as usize] == 0 => Source::Default,
                _ => Source::Config {
                    key: format!("sync.{f}"),
                    line: self.base.lines[f as usize],
                },
            };
            let before = q;
            q = apply(f, value, q);
            steps.push(Step {
                field: f,
                value,
                source,
                before,
                after: q,
            });
        }
        steps
    }
}

/// One rule on what is left (`frozen` changes no number).
fn apply(f: Field, v: i64, q: i64) -> i64 {
    match f {
        Field::SafetyStock => q.saturating_sub(v).max(0),
        Field::ZeroBelow if q <= v => 0,
        Field::ZeroBelow => q,
        // 0 <= q and 0 <= v <= 100: the product fits in i128, the result in i64.
        Field::Percent => i64::try_from(i128::from(q.max(0)) * i128::from(v) / 100).unwrap_or(q),
        Field::MaxQuantity => q.min(v),
        Field::Frozen => q,
    }
}

/// What a listing shows of `available` units under `limits`: never below
/// 0, never above `available`.
pub fn show(available: i64, limits: &Limits) -> i64 {
    let mut q = apply(Field::SafetyStock, limits.safety_stock, available);
    if let Some(n) = limits.zero_below {
        q = apply(Field::ZeroBelow, n, q);
    }
    if let Some(p) = limits.percent {
        q = apply(Field::Percent, p, q);
    }
    if let Some(m) = limits.max_quantity {
        q = apply(Field::MaxQuantity, m, q);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderName::{Eticaret, Pazarsync};

    fn limits(safety: i64, zero: Option<i64>, pct: Option<i64>, max: Option<i64>) -> Limits {
        Limits {
            safety_stock: safety,
            zero_below: zero,
            percent: pct,
            max_quantity: max,
            frozen: false,
        }
    }

    #[test]
    fn each_rule_alone() {
        // (available, limits, shown)
        let cases = [
            (10, limits(0, None, None, None), 10),
            (10, limits(3, None, None, None), 7),
            (2, limits(5, None, None, None), 0),
            (-4, limits(0, None, None, None), 0),
            (i64::MIN, limits(1, None, None, None), 0),
            (10, limits(0, None, None, Some(4)), 4),
            (3, limits(0, None, None, Some(4)), 3),
            (10, limits(0, None, None, Some(0)), 0),
            (10, limits(0, None, Some(50), None), 5),
            (9, limits(0, None, Some(50), None), 4),
            (1, limits(0, None, Some(99), None), 0),
            (10, limits(0, None, Some(100), None), 10),
            (10, limits(0, None, Some(0), None), 0),
            (i64::MAX, limits(0, None, Some(100), None), i64::MAX),
            (2, limits(0, Some(2), None, None), 0),
            (3, limits(0, Some(2), None, None), 3),
            (0, limits(0, Some(0), None, None), 0),
        ];
        for (i, (available, l, want)) in cases.into_iter().enumerate() {
            assert_eq!(show(available, &l), want, "case {i}: {available} {l:?}");
        }
    }

    /// Safety stock first, then zero_below on what is left, then the
    /// share, then the cap.
    #[test]
    fn rules_apply_in_their_order() {
        // 20 - 5 = 15; 15 > 10 stays; 60 % = 9; cap 8.
        assert_eq!(show(20, &limits(5, Some(10), Some(60), Some(8))), 8);
        // zero_below looks at what the safety stock left: 14 - 5 = 9 <= 10.
        assert_eq!(show(14, &limits(5, Some(10), Some(60), Some(8))), 0);
        // The share is taken before the cap: 50 % of 30 = 15, cap 20 leaves 15
        // (a cap first would give 10).
        assert_eq!(show(30, &limits(0, None, Some(50), Some(20))), 15);
        // zero_below before the share: 6 > 5 stays 6, then 50 % = 3 (a
        // share first would give 3 <= 5, then 0).
        assert_eq!(show(6, &limits(0, Some(5), Some(50), None)), 3);
    }

    fn level(set: RuleSet, line: usize) -> ConfigLevel {
        ConfigLevel {
            set,
            lines: [line; 5],
        }
    }

    #[test]
    fn a_sku_row_overrides_the_provider_which_overrides_sync_field_by_field() {
        let mut rules = Rules::with_safety_stock(2);
        rules.base.lines = [3; 5];
        rules.providers.insert(
            Eticaret,
            level(
                RuleSet::default()
                    .with(Field::SafetyStock, 4)
                    .with(Field::MaxQuantity, 10),
                9,
            ),
        );
        // Pazarsync has no table: [sync] only.
        assert_eq!(rules.limits(Pazarsync, None), limits(2, None, None, None));
        assert_eq!(
            rules.limits(Eticaret, None),
            limits(4, None, None, Some(10))
        );
        // The SKU row sets only the cap: the provider's safety stock stays.
        let sku = RuleSet::default().with(Field::MaxQuantity, 3);
        assert_eq!(
            rules.limits(Eticaret, Some(&sku)),
            limits(4, None, None, Some(3))
        );
        // ... and a SKU row applies to its provider only: on Pazarsync the
        // caller passes that provider's row, not this one.
        let frozen = RuleSet::default().with(Field::Frozen, 1);
        assert!(rules.limits(Pazarsync, Some(&frozen)).frozen);
        assert!(!rules.limits(Pazarsync, None).frozen);
        // A SKU row can unfreeze what its provider froze.
        rules
            .providers
            .get_mut(&Eticaret)
            .unwrap()
            .set
            .set(Field::Frozen, Some(1));
        assert!(rules.limits(Eticaret, None).frozen);
        let thawed = RuleSet::default().with(Field::Frozen, 0);
        assert!(!rules.limits(Eticaret, Some(&thawed)).frozen);
    }

    #[test]
    fn steps_name_each_rule_its_source_and_what_it_did() {
        let mut rules = Rules::with_safety_stock(1);
        rules.base.lines = [4; 5];
        rules.providers.insert(
            Eticaret,
            level(RuleSet::default().with(Field::Percent, 50), 12),
        );
        let sku = RuleSet::default().with(Field::MaxQuantity, 3);
        let steps = rules.steps(Eticaret, Some(&sku), "rules.csv line 2", 11);
        let got: Vec<(Field, i64, String, i64, i64)> = steps
            .iter()
            .map(|s| (s.field, s.value, s.source.to_string(), s.before, s.after))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Field::SafetyStock,
                    1,
                    "config line 4 (`sync.safety_stock`)".to_string(),
                    11,
                    10
                ),
                (
                    Field::Percent,
                    50,
                    "config line 12 (`rules.eticaret.percent`)".to_string(),
                    10,
                    5
                ),
                (Field::MaxQuantity, 3, "rules.csv line 2".to_string(), 5, 3),
            ]
        );
        // The steps end where `show` does.
        assert_eq!(
            steps.last().unwrap().after,
            show(11, &rules.limits(Eticaret, Some(&sku)))
        );
        // With nothing set: the default safety stock of 0, one step.
        let none = Rules::default().steps(Pazarsync, None, "", -2);
        assert_eq!(none.len(), 1);
        assert_eq!(
            (none[0].source.clone(), none[0].after),
            (Source::Default, 0)
        );
    }

    #[test]
    fn values_are_checked_per_field() {
        assert!(Field::Percent.check(100).is_ok());
        assert!(Field::Percent.check(101).is_err());
        assert!(Field::Frozen.check(2).is_err());
        assert!(Field::MaxQuantity.check(-1).is_err());
        assert!(Field::ZeroBelow.check(0).is_ok());
    }
}
