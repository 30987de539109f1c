//! The planning step, pure: from ledger quantities and what each provider
//! last confirmed, decide what every listing must show and which pushes are
//! needed. No I/O; the executor in `engine/mod.rs` does that.

use crate::domain::{ListingRef, StockPush};
use crate::ledger::ListingState;
use crate::rules::{Limits, Rules, show};

/// What a listing should show: the ledger quantity less the safety stock,
/// never below zero (no other rule).
pub fn wanted(ledger_qty: i64, safety_stock: i64) -> i64 {
    show(
        ledger_qty,
        &Limits {
            safety_stock,
            ..Limits::default()
        },
    )
}

/// What `l` should show under `rules`, and whether it is frozen; `None`
/// when its SKU has no stock in the ledger.
pub fn wanted_of(l: &ListingState, rules: &Rules) -> Option<(i64, bool)> {
    let limits = rules.limits(l.listing.provider, l.rule.as_ref());
    l.ledger_qty.map(|q| (show(q, &limits), limits.frozen))
}

/// Why a listing that differs is not pushed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The listing's SKU has no ledger row: pushing 0 would zero a live
    /// listing on a guess. Import the SKU's stock first.
    SkuNotInLedger,
    /// The provider refused exactly this value before; retried once the
    /// wanted value changes (or the mapping is re-imported).
    Rejected { wanted: i64 },
    /// A `frozen` rule: never pushed; it shows what the provider shows.
    Frozen { wanted: i64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub pushes: Vec<StockPush>,
    /// The lane of each push, index for index.
    pub lanes: Vec<Lane>,
    /// Whether what each push's listing shows is unknown (never confirmed,
    /// or a lost answer of ours may have changed it), index for index.
    pub blind: Vec<bool>,
    pub held: Vec<(ListingRef, Held)>,
}

/// Which pushes go first: a listing about to show 0, then one that must
/// come down (a sale elsewhere: the oversell risk), then one that may go up
/// (a missed sale at worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Zero,
    Decrease,
    Increase,
}

/// The lane of a push of `want` to a listing last confirmed at `confirmed`
/// (unknown when never confirmed, or when a lost answer of ours may have
/// left another value): down when it is known to come down.
pub fn lane(want: i64, confirmed: Option<i64>, unsettled: bool) -> Lane {
    match confirmed {
        _ if want == 0 => Lane::Zero,
        Some(c) if !unsettled && want < c => Lane::Decrease,
        // A lost answer of ours may have raised it: treat as coming down.
        Some(c) if unsettled && want <= c => Lane::Decrease,
        _ => Lane::Increase,
    }
}

pub fn plan(listings: &[ListingState], rules: &Rules) -> Plan {
    let mut out = Plan::default();
    for l in listings {
        let Some((want, frozen)) = wanted_of(l, rules) else {
            out.held.push((l.listing.clone(), Held::SkuNotInLedger));
            continue;
        };
        if frozen {
            out.held
                .push((l.listing.clone(), Held::Frozen { wanted: want }));
            continue;
        }
        // An unsettled push may have left another value there: push again
        // (the answer settles it), even when the confirmed value matches.
        if l.confirmed_qty == Some(want) && !l.unsettled {
            continue;
        }
        if l.rejected_qty == Some(want) {
            out.held
                .push((l.listing.clone(), Held::Rejected { wanted: want }));
            continue;
        }
        out.lanes.push(lane(want, l.confirmed_qty, l.unsettled));
        out.blind.push(l.confirmed_qty.is_none() || l.unsettled);
        out.pushes.push(StockPush::new(l.listing.clone(), want));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderName;

    fn listing(
        id: &str,
        ledger: Option<i64>,
        confirmed: Option<i64>,
        rejected: Option<i64>,
    ) -> ListingState {
        ListingState {
            listing: ListingRef {
                provider: ProviderName::Bazaardan,
                listing_id: id.to_string(),
                variant_id: String::new(),
            },
            sku: format!("SKU-{id}"),
            ledger_qty: ledger,
            confirmed_qty: confirmed,
            rejected_qty: rejected,
            unsettled: false,
            rule: None,
        }
    }

    #[test]
    fn wanted_is_ledger_less_safety_never_negative() {
        let cases = [
            (10, 0, 10),
            (10, 3, 7),
            (3, 3, 0),
            (2, 5, 0),
            (-4, 0, 0),
            (-4, 2, 0),
            (i64::MIN, 1, 0),
        ];
        for (ledger, safety, want) in cases {
            assert_eq!(
                wanted(ledger, safety),
                want,
                "ledger {ledger} safety {safety}"
            );
        }
    }

    #[test]
    fn plan_pushes_only_what_differs() {
        // (ledger, confirmed, rejected, safety) -> push?, held?
        type Case = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            i64,
            Option<i64>,
            Option<Held>,
        );
        let cases: &[Case] = &[
            // never confirmed: push
            (Some(5), None, None, 0, Some(5), None),
            // confirmed equal: nothing
            (Some(5), Some(5), None, 0, None, None),
            // confirmed differs: push the new value
            (Some(4), Some(5), None, 0, Some(4), None),
            // safety stock applies
            (Some(5), Some(5), None, 2, Some(3), None),
            (Some(2), Some(0), None, 2, None, None),
            // oversold ledger shows 0
            (Some(-3), Some(1), None, 0, Some(0), None),
            (Some(-3), Some(0), None, 0, None, None),
            // refused value is not retried ...
            (
                Some(4),
                Some(5),
                Some(4),
                0,
                None,
                Some(Held::Rejected { wanted: 4 }),
            ),
            // ... until the wanted value moves
            (Some(3), Some(5), Some(4), 0, Some(3), None),
            // a SKU missing from the ledger is never pushed as 0
            (None, Some(5), None, 0, None, Some(Held::SkuNotInLedger)),
        ];
        for (i, (ledger, confirmed, rejected, safety, push, held)) in cases.iter().enumerate() {
            let p = plan(
                &[listing("1", *ledger, *confirmed, *rejected)],
                &Rules::with_safety_stock(*safety),
            );
            assert_eq!(p.pushes.first().map(|s| s.quantity), *push, "case {i}");
            assert_eq!(p.held.first().map(|h| h.1.clone()), *held, "case {i}");
        }
    }

    /// A push of ours whose answer was lost may have left another value:
    /// the listing is pushed even when the confirmed value is the wanted
    /// one (a refused value stays held).
    #[test]
    fn an_unsettled_listing_is_pushed_even_when_it_looks_confirmed() {
        let mut l = listing("1", Some(5), Some(5), None);
        assert!(
            plan(std::slice::from_ref(&l), &Rules::default())
                .pushes
                .is_empty()
        );
        l.unsettled = true;
        assert_eq!(
            plan(std::slice::from_ref(&l), &Rules::default()).pushes[0].quantity,
            5
        );
        l.rejected_qty = Some(5);
        let p = plan(&[l], &Rules::default());
        assert!(p.pushes.is_empty());
        assert_eq!(p.held[0].1, Held::Rejected { wanted: 5 });
    }

    #[test]
    fn lanes_put_zeros_then_decreases_first() {
        assert_eq!(lane(0, Some(5), false), Lane::Zero);
        assert_eq!(lane(0, None, false), Lane::Zero);
        assert_eq!(lane(3, Some(5), false), Lane::Decrease);
        assert_eq!(lane(7, Some(5), false), Lane::Increase);
        assert_eq!(lane(7, None, false), Lane::Increase);
        assert_eq!(lane(5, Some(5), true), Lane::Decrease);
        assert!(Lane::Zero < Lane::Decrease && Lane::Decrease < Lane::Increase);
        let p = plan(
            &[
                listing("1", Some(9), Some(2), None),
                listing("2", Some(1), Some(2), None),
            ],
            &Rules::default(),
        );
        assert_eq!(p.lanes, [Lane::Increase, Lane::Decrease]);
    }

    #[test]
    fn many_listings_keep_their_order_and_each_gets_one_push() {
        let ls = vec![
            listing("1", Some(1), None, None),
            listing("2", Some(2), Some(2), None),
            listing("3", Some(3), Some(0), None),
        ];
        let p = plan(&ls, &Rules::default());
        let ids: Vec<&str> = p
            .pushes
            .iter()
            .map(|s| s.listing.listing_id.as_str())
            .collect();
        assert_eq!(ids, ["1", "3"]);
    }

    #[test]
    fn a_frozen_listing_is_never_pushed_and_is_reported() {
        use crate::rules::{Field, RuleSet};
        let mut l = listing("1", Some(9), Some(4), None);
        l.rule = Some(RuleSet::default().with(Field::Frozen, 1));
        let p = plan(std::slice::from_ref(&l), &Rules::default());
        assert!(p.pushes.is_empty());
        assert_eq!(p.held, [(l.listing.clone(), Held::Frozen { wanted: 9 })]);
        // Even never confirmed, or unsettled.
        l.confirmed_qty = None;
        l.unsettled = true;
        assert!(plan(&[l], &Rules::default()).pushes.is_empty());
    }

    #[test]
    fn a_sku_rule_caps_its_listing_and_not_the_others() {
        use crate::rules::{Field, RuleSet};
        let mut capped = listing("1", Some(9), None, None);
        capped.rule = Some(RuleSet::default().with(Field::MaxQuantity, 2));
        let free = listing("2", Some(9), None, None);
        let p = plan(&[capped, free], &Rules::with_safety_stock(1));
        let got: Vec<i64> = p.pushes.iter().map(|s| s.quantity).collect();
        assert_eq!(got, [2, 8]);
    }

    mod properties {
        use super::*;
        use crate::domain::ProviderName;
        use crate::rules::{ConfigLevel, Field, Limits, RuleSet, show};
        use proptest::prelude::*;

        /// Fixed seed unless `PROPTEST_RNG_SEED` is set (as tests/props.rs):
        /// a red run is reproducible; `PROPTEST_CASES` soaks longer.
        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(512);
            let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
                Ok(_) => ProptestConfig::default().rng_seed,
                Err(_) => proptest::test_runner::RngSeed::Fixed(0x91a7_0c12),
            };
            ProptestConfig {
                cases,
                rng_seed,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn quantity() -> impl Strategy<Value = i64> {
            prop_oneof![-50i64..200, any::<i64>(), Just(i64::MAX), Just(i64::MIN)]
        }

        fn count() -> impl Strategy<Value = i64> {
            prop_oneof![0i64..60, 0i64..=i64::MAX]
        }

        fn rule_set() -> impl Strategy<Value = RuleSet> {
            (
                proptest::option::of(count()),
                proptest::option::of(count()),
                proptest::option::of(0i64..=100),
                proptest::option::of(count()),
                proptest::option::of(0i64..=1),
            )
                .prop_map(|(safety, zero, pct, max, frozen)| {
                    let mut r = RuleSet::default();
                    r.set(Field::SafetyStock, safety);
                    r.set(Field::ZeroBelow, zero);
                    r.set(Field::Percent, pct);
                    r.set(Field::MaxQuantity, max);
                    r.set(Field::Frozen, frozen);
                    r
                })
        }

        fn rules() -> impl Strategy<Value = Rules> {
            (
                proptest::option::of(count()),
                proptest::collection::vec(proptest::option::of(rule_set()), 4),
            )
                .prop_map(|(safety, per)| {
                    let mut r = Rules::default();
                    r.base.set.set(Field::SafetyStock, safety);
                    for (p, set) in ProviderName::ALL.into_iter().zip(per) {
                        if let Some(set) = set {
                            r.providers.insert(p, ConfigLevel { set, lines: [1; 5] });
                        }
                    }
                    r
                })
        }

        fn state() -> impl Strategy<Value = ListingState> {
            (
                0usize..4,
                proptest::option::of(quantity()),
                proptest::option::of(0i64..200),
                proptest::option::of(0i64..200),
                any::<bool>(),
                proptest::option::of(rule_set()),
            )
                .prop_map(|(p, ledger, confirmed, rejected, unsettled, rule)| {
                    ListingState {
                        listing: ListingRef {
                            provider: ProviderName::ALL[p],
                            listing_id: String::new(),
                            variant_id: String::new(),
                        },
                        sku: String::new(),
                        ledger_qty: ledger,
                        confirmed_qty: confirmed,
                        rejected_qty: rejected,
                        unsettled,
                        rule,
                    }
                })
        }

        proptest! {
            #![proptest_config(config())]

            /// What a listing shows is never negative, never above what
            /// the ledger has available after the safety stock, and never
            /// goes down when more is available.
            #[test]
            fn shown_is_within_what_is_available_and_monotone(
                available in quantity(),
                safety in count(),
                zero in proptest::option::of(count()),
                pct in proptest::option::of(0i64..=100),
                max in proptest::option::of(count()),
            ) {
                let l = Limits { safety_stock: safety, zero_below: zero, percent: pct, max_quantity: max, frozen: false };
                let q = show(available, &l);
                prop_assert!(q >= 0);
                prop_assert!(q <= available.saturating_sub(safety).max(0));
                prop_assert!(q <= available.max(0));
                if let Some(m) = max {
                    prop_assert!(q <= m);
                }
                if available < i64::MAX {
                    prop_assert!(show(available + 1, &l) >= q);
                }
            }

            /// The planner: every push within [0, the ledger's quantity],
            /// never for a frozen listing or a SKU without stock, and each
            /// listing either pushed, held, or already showing its value.
            #[test]
            fn the_plan_never_pushes_outside_the_ledger_or_a_frozen_listing(
                mut states in proptest::collection::vec(state(), 0..40),
                rules in rules(),
            ) {
                for (i, s) in states.iter_mut().enumerate() {
                    s.listing.listing_id = i.to_string();
                }
                let p = plan(&states, &rules);
                prop_assert_eq!(p.pushes.len(), p.lanes.len());
                for push in &p.pushes {
                    let s = &states[push.listing.listing_id.parse::<usize>().unwrap()];
                    let ledger = s.ledger_qty.expect("a SKU without stock is never pushed");
                    prop_assert!(push.quantity >= 0);
                    prop_assert!(push.quantity <= ledger.max(0));
                    let lim = rules.limits(s.listing.provider, s.rule.as_ref());
                    prop_assert!(!lim.frozen, "a frozen listing was pushed");
                    prop_assert_eq!(push.quantity, show(ledger, &lim));
                }
                for (i, s) in states.iter().enumerate() {
                    let id = i.to_string();
                    let pushed = p.pushes.iter().filter(|x| x.listing.listing_id == id).count();
                    let held = p.held.iter().filter(|(l, _)| l.listing_id == id).count();
                    prop_assert!(pushed + held <= 1);
                    if pushed + held == 0 {
                        let want = wanted_of(s, &rules).map(|w| w.0);
                        prop_assert_eq!(s.confirmed_qty, want, "left alone only when it shows the wanted value");
                        prop_assert!(!s.unsettled);
                    }
                }
            }

            /// Field by field: the SKU's row, then the provider's table,
            /// then `[sync]`.
            #[test]
            fn each_field_comes_from_the_nearest_level_that_sets_it(
                rules in rules(),
                sku in proptest::option::of(rule_set()),
                p in 0usize..4,
            ) {
                let p = ProviderName::ALL[p];
                let lim = rules.limits(p, sku.as_ref());
                let pick = |f: Field| sku.and_then(|s| s.get(f))
                    .or_else(|| rules.providers.get(&p).and_then(|l| l.set.get(f)))
                    .or_else(|| rules.base.set.get(f));
                prop_assert_eq!(lim.safety_stock, pick(Field::SafetyStock).unwrap_or(0));
                prop_assert_eq!(lim.zero_below, pick(Field::ZeroBelow));
                prop_assert_eq!(lim.percent, pick(Field::Percent));
                prop_assert_eq!(lim.max_quantity, pick(Field::MaxQuantity));
                prop_assert_eq!(lim.frozen, pick(Field::Frozen) == Some(1));
                // explain's steps end where the planner does.
                let steps = rules.steps(p, sku.as_ref(), "row", 37);
                prop_assert_eq!(steps.last().map(|s| s.after), Some(show(37, &lim)));
            }
        }
    }
}
