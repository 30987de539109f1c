//! The answer-lost class: a provider carries out a push, and the answer
//! never arrives (the connection drops after the write, the client times
//! out, a proxy answers 5xx, the body is broken). The retry then meets our
//! own earlier write. stokdurumu reveals what a listing showed before each
//! write (`old_qty`), and that value must not be taken for a hand edit; on
//! every provider the listing must still end at the ledger's value.
//!
//! Each test runs the real engine and adapters against the in-process
//! fakes over loopback HTTP, with a real SQLite ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::ListingRef;
use stoksync::engine::Engine;
use stoksync::ledger::{Ledger, StockChange};
use stoksync::providers::build_all;
use stoksync::sandbox::{Fake, Fault, Lost, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio_util::sync::CancellationToken;

/// Every way an answer is lost after the provider applied the write.
const LOSSES: [Lost; 4] = [
    Lost::Drop,
    Lost::Hang(Duration::from_millis(700)),
    Lost::Malformed,
    Lost::ServerError,
];

/// Attempts per call, as configured below.
const ATTEMPTS: usize = 3;

struct World {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    engine: Engine,
}

async fn world(tables: &[String], stock: &[(&str, i64)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[ledger]\ndatabase = \"ledger.db\"\n[http]\nlisten = \"off\"\n[sync]\nrequest_timeout = \"300ms\"\nmax_attempts = {ATTEMPTS}\n{}",
        tables.join("\n")
    );
    let config = Config::parse(&text, &dir.path().join("s.toml"), &|_| None).unwrap();
    let ledger = Ledger::open(&config.database).await.unwrap();
    let rows: Vec<(String, i64)> = stock.iter().map(|(s, q)| (s.to_string(), *q)).collect();
    ledger.import_stock(&rows, "seed", "seed").await.unwrap();
    let providers = build_all(&config, &ledger, &CancellationToken::new()).unwrap();
    let engine = Engine::new(ledger.clone(), providers, config.sync.clone());
    World {
        _dir: dir,
        ledger,
        engine,
    }
}

impl World {
    async fn sync(&self) -> stoksync::engine::SyncSummary {
        self.engine
            .sync_once(&CancellationToken::new())
            .await
            .unwrap()
    }

    /// Movements made by hand in a provider's panel, as journaled.
    async fn hand_movements(&self, sku: &str) -> Vec<i64> {
        self.ledger
            .history(sku)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "external")
            .map(|m| m.delta)
            .collect()
    }
}

async fn stokdurumu_fake() -> Arc<stokdurumu::FakeStokdurumu> {
    Arc::new(
        stokdurumu::FakeStokdurumu::start(Default::default())
            .await
            .unwrap(),
    )
}

/// Defect: the retry's `old_qty` was our own lost write, and the ledger
/// journaled it as a hand edit of the size of our push (+5 here).
#[tokio::test]
async fn stokdurumu_a_lost_answer_is_not_a_hand_edit() {
    for lost in LOSSES {
        let fake = stokdurumu_fake().await;
        let l = fake.add_product("SKU-1", 10);
        let w = world(&[fake.config_table(true)], &[("SKU-1", 15)]).await;
        fake.inject(Fault::Lost(lost), 1, Some("stock"));

        let s = w.sync().await;
        assert!(s.converged(), "{lost:?}: {s:?}");
        assert_eq!(fake.counters().lost_answers, 1, "{lost:?}");
        assert_eq!(fake.stock(&l), Some(15), "{lost:?}");
        assert_eq!(
            w.ledger.stock_of("SKU-1").await.unwrap(),
            Some(15),
            "{lost:?}: our own write was taken for a hand edit"
        );
        assert!(w.hand_movements("SKU-1").await.is_empty(), "{lost:?}");
    }
}

/// A hand edit that lands between our write (whose answer is lost) and its
/// retry is counted, once, with its own size: the retry overwrites it, so
/// only the provider's history tells it apart.
#[tokio::test]
async fn stokdurumu_a_hand_edit_racing_a_lost_write_is_counted_once() {
    let fake = stokdurumu_fake().await;
    let l = fake.add_product("SKU-1", 10);
    let w = world(&[fake.config_table(true)], &[("SKU-1", 15)]).await;
    fake.inject(Fault::Lost(Lost::Drop), 1, Some("stock"));
    let once = Arc::new(AtomicBool::new(true));
    let (f, id) = (fake.clone(), l.listing_id.parse::<u64>().unwrap());
    fake.set_tripwire(Some(Arc::new(move || {
        if once.swap(false, Ordering::SeqCst) {
            // 15 -> 13 in the panel, right after our write applied.
            f.set_by_hand(id, 13);
        }
        // The answer goes out as usual.
        false
    })));

    w.sync().await;
    fake.set_tripwire(None);
    let s = w.sync().await;
    assert!(s.converged(), "{s:?}");
    assert_eq!(w.hand_movements("SKU-1").await, [-2]);
    assert_eq!(w.ledger.stock_of("SKU-1").await.unwrap(), Some(13));
    assert_eq!(fake.stock(&l), Some(13));
}

/// Every attempt of a call lost its answer: the push failed, and the next
/// round's answer shows our own value. A hand edit made between the rounds
/// is still counted with its own size.
#[tokio::test]
async fn stokdurumu_a_push_whose_every_answer_was_lost_settles_next_round() {
    for hand_edit in [None, Some(12)] {
        let fake = stokdurumu_fake().await;
        let l = fake.add_product("SKU-1", 10);
        let w = world(&[fake.config_table(true)], &[("SKU-1", 15)]).await;
        fake.inject(Fault::Lost(Lost::ServerError), ATTEMPTS, Some("stock"));
        let s = w.sync().await;
        assert!(!s.converged(), "the push failed: {s:?}");
        assert_eq!(fake.stock(&l), Some(15), "it was applied all the same");
        if let Some(q) = hand_edit {
            fake.set_by_hand(l.listing_id.parse().unwrap(), q);
        }
        let s = w.sync().await;
        let s = if s.converged() { s } else { w.sync().await };
        assert!(s.converged(), "{s:?}");
        let want = 15 + hand_edit.map_or(0, |q| q - 15);
        assert_eq!(
            w.ledger.stock_of("SKU-1").await.unwrap(),
            Some(want),
            "hand edit {hand_edit:?}"
        );
        assert_eq!(
            w.hand_movements("SKU-1").await,
            hand_edit.map(|q| q - 15).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(fake.stock(&l), Some(want));
    }
}

/// A read of the panel (the drift check) that comes while a push of ours
/// is unsettled: the value our lost write left is ours, not a hand edit.
#[tokio::test]
async fn stokdurumu_a_read_after_a_lost_write_is_not_a_hand_edit() {
    let fake = stokdurumu_fake().await;
    let l = fake.add_product("SKU-1", 10);
    let w = world(&[fake.config_table(true)], &[("SKU-1", 15)]).await;
    fake.inject(Fault::Lost(Lost::Drop), ATTEMPTS, Some("stock"));
    w.sync().await;
    assert_eq!(fake.stock(&l), Some(15));
    // The next round reads the products first (unlimited plan: every poll).
    let s = w.sync().await;
    assert!(s.converged(), "{s:?}");
    assert!(w.hand_movements("SKU-1").await.is_empty());
    assert_eq!(w.ledger.stock_of("SKU-1").await.unwrap(), Some(15));
}

/// On the marketplaces (no hand edits read): a write applied whose answer
/// was lost must not leave the listing wrong when the wanted value goes
/// back to the last confirmed one. The listing shows the lost write's
/// value, so it is pushed although "confirmed" equals "wanted".
#[tokio::test]
async fn marketplaces_a_lost_write_is_pushed_over_even_when_wanted_equals_confirmed() {
    let v2 = eticaret::FakeEticaret::start(Default::default())
        .await
        .unwrap();
    let ps = pazarsync::FakePazarsync::start(Default::default())
        .await
        .unwrap();
    let bz = bazaardan::FakeBazaardan::start(bazaardan::Options {
        requests_per_minute: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let fakes: [&dyn Fake; 3] = [&v2, &ps, &bz];
    let listings: Vec<ListingRef> = fakes.iter().map(|f| f.add_product("SKU-1", 10)).collect();
    let tables: Vec<String> = fakes.iter().map(|f| f.config_table(true)).collect();
    let w = world(&tables, &[("SKU-1", 10)]).await;
    // BaZaaRDan has no product list: link it by mapping.
    w.ledger
        .import_mappings(&[("SKU-1".to_string(), listings[2].clone())])
        .await
        .unwrap();
    assert!(w.sync().await.converged());

    // 10 -> 15: every write is applied and every answer lost.
    w.ledger
        .erp_movement("SKU-1", StockChange::To(15), "count", "k1")
        .await
        .unwrap();
    for f in fakes {
        f.inject(
            Fault::Lost(Lost::ServerError),
            ATTEMPTS,
            Some(f.push_endpoint()),
        );
    }
    let s = w.sync().await;
    assert!(!s.converged(), "{s:?}");
    for (f, l) in fakes.iter().zip(&listings) {
        assert_eq!(f.stock(l), Some(15), "{}: applied", f.provider());
    }
    // Back to 10, the value each listing last confirmed.
    w.ledger
        .erp_movement("SKU-1", StockChange::To(10), "recount", "k2")
        .await
        .unwrap();
    let s = w.sync().await;
    assert!(s.converged(), "{s:?}");
    for (f, l) in fakes.iter().zip(&listings) {
        assert_eq!(
            f.stock(l),
            Some(10),
            "{}: left at our lost write's value",
            f.provider()
        );
    }
}

/// A PazarSync batch whose answer is lost, retried after the token was
/// revoked (401, one refresh): applied twice, confirmed once, converged.
#[tokio::test]
async fn pazarsync_a_batch_retried_after_a_401_refresh_converges() {
    let ps = Arc::new(
        pazarsync::FakePazarsync::start(Default::default())
            .await
            .unwrap(),
    );
    let a = ps.add_product("A", 1);
    let b = ps.add_product("B", 1);
    let w = world(&[ps.config_table(true)], &[("A", 7), ("B", 8)]).await;
    ps.inject(Fault::Lost(Lost::Drop), 1, Some("stocks/batch"));
    let once = Arc::new(AtomicBool::new(true));
    let p2 = ps.clone();
    ps.set_tripwire(Some(Arc::new(move || {
        if once.swap(false, Ordering::SeqCst) {
            p2.revoke_tokens();
        }
        false
    })));
    let s = w.sync().await;
    assert!(s.converged(), "{s:?}");
    assert_eq!((ps.stock(&a), ps.stock(&b)), (Some(7), Some(8)));
    let c = ps.counters();
    assert_eq!(c.lost_answers, 1, "{c:?}");
    assert!(
        c.auth_failures >= 1,
        "the retry met the revoked token: {c:?}"
    );
    assert_eq!(c.noop_writes, 0, "{:?}", c.noop_examples);
}
