//! Backup, export and the deep check with the real binary: an export
//! imports back as it was, a backup taken while the ledger is written is a
//! sound ledger, and `check --deep` finds a balance moved behind the
//! journal's back.

mod common;

use common::{Env, Knobs, describe, wait_for};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use stoksync::ledger::{Ledger, StockChange};

/// SKUs a plain `split(',')` would break: commas, quotes, a leading quote,
/// Turkish letters, a semicolon.
const STOCK: &str = "sku,quantity\n\"ÇANTA,büyük\",7\n\"KALEM \"\"mavi\"\"\",0\n\"\"\"ŞİŞE\",12\nSİLGİ;2,3\nığdır-ÖZ,4\n";

fn stock_rows(v: &Value) -> Vec<(String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sku"].as_str().unwrap().to_string(),
                r["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn links(env: &Env) -> Vec<(String, String, String, String)> {
    let v: Value = serde_json::from_str(&env.ok(&["mapping", "list", "--json"]).await).unwrap();
    v["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("sku"), s("provider"), s("listing_id"), s("variant_id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_back_as_it_was() {
    let from = Env::new(Knobs::default()).await;
    let stock = from.write("stock.csv", STOCK);
    from.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    from.ok(&["stock", "adjust", "ığdır-ÖZ", "-2", "--reason", "satış"])
        .await;
    let map = from.write(
        "map.csv",
        "sku,provider,listing_id,variant_id\n\"ÇANTA,büyük\",bazaardan,501,778\n\"KALEM \"\"mavi\"\"\",eticaret,\"KOD,\"\"1\"\"\",BARKOD;2\n\"\"\"ŞİŞE\",stokdurumu,3,\nSİLGİ;2,eticaret,ÇİÇEK,\n",
    );
    from.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    let want_stock = stock_rows(&from.stock().await);
    let want_links = links(&from).await;
    assert_eq!(want_stock.len(), 5);
    assert_eq!(want_links.len(), 4);

    // To a file and to standard output: the same bytes.
    let stock_out = from.path("stock-export.csv");
    from.ok(&["stock", "export", stock_out.to_str().unwrap()])
        .await;
    let stdout = from.ok(&["stock", "export"]).await;
    assert_eq!(std::fs::read_to_string(&stock_out).unwrap(), stdout);
    assert!(stdout.contains("\"ÇANTA,büyük\",7\n"), "{stdout}");
    let map_out = from.path("map-export.csv");
    from.ok(&["mapping", "export", map_out.to_str().unwrap()])
        .await;
    assert_eq!(
        std::fs::read_to_string(&map_out).unwrap(),
        from.ok(&["mapping", "export"]).await
    );

    // Into a new ledger: the same counts and links.
    let to = Env::new(Knobs::default()).await;
    to.ok(&["stock", "import", stock_out.to_str().unwrap()])
        .await;
    to.ok(&["mapping", "import", map_out.to_str().unwrap()])
        .await;
    assert_eq!(stock_rows(&to.stock().await), want_stock);
    assert_eq!(links(&to).await, want_links);
    // And exported again, byte for byte.
    assert_eq!(to.ok(&["stock", "export"]).await, stdout);
}

/// A writer in this process moves stock as fast as the disk lets it while
/// the daemon runs and `backup` copies the ledger three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_ledger_is_written_is_a_sound_ledger() {
    let env = Env::new(Knobs::default()).await;
    env.fake.add_listing(501, None, "KALEM-1", 5);
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,5\nKALEM-2,100\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    let map = env.write(
        "map.csv",
        "sku,provider,listing_id,variant_id\nKALEM-1,bazaardan,501,\n",
    );
    env.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    let mut daemon = env.spawn(&["run"]);

    let ledger = Ledger::open(&env.database()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (ledger, stop, written) = (ledger.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let delta = if n.is_multiple_of(2) { 3 } else { -2 };
                ledger
                    .erp_movement("KALEM-2", StockChange::By(delta), "test", &format!("w/{n}"))
                    .await
                    .unwrap();
                written.store(n, Ordering::SeqCst);
            }
        })
    };
    let at_least = |n: u64| {
        let written = written.clone();
        move || {
            let w = written.clone();
            async move { w.load(Ordering::SeqCst) >= n }
        }
    };
    wait_for(
        Duration::from_secs(30),
        "the writer's first moves",
        at_least(5),
    )
    .await;

    let mut counts = Vec::new();
    for i in 0..3 {
        let file = env.path(&format!("backup-{i}.db"));
        let out = env.run(&["backup", file.to_str().unwrap()]).await;
        assert!(out.status.success(), "{}", describe(&out));
        // A move committed after the backup ended is in no copy so far.
        let after = written.load(Ordering::SeqCst);
        wait_for(
            Duration::from_secs(30),
            "the writer goes on after a backup",
            at_least(after + 1),
        )
        .await;
        counts.push(sound_ledger(&env, &file).await);
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let total = ledger.movement_count().await.unwrap();
    ledger.close().await;
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]) && counts[2] < total,
        "each backup is a later snapshot than the one before: {counts:?} of {total}"
    );

    // The daemon went on syncing: a change after the backups is pushed.
    env.ok(&["stock", "set", "KALEM-1", "9", "--reason", "recount"])
        .await;
    wait_for(
        Duration::from_secs(30),
        "the push after the backups",
        || async { env.fake.listing_stock(501, None) == Some(9) },
    )
    .await;
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon runs on");
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;

    // An existing file is never replaced unasked.
    let file = env.path("backup-0.db");
    let before = std::fs::read(&file).unwrap();
    let out = env.run(&["backup", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
    env.ok(&["backup", "--force", file.to_str().unwrap()]).await;
    assert!(sound_ledger(&env, &file).await > counts[0]);
}

/// `check --deep` on the copy passes, and its journal sums hold by our own
/// count too; returns its movement count.
async fn sound_ledger(env: &Env, file: &Path) -> i64 {
    let config = env.path("backup.toml");
    std::fs::write(
        &config,
        format!("[ledger]\ndatabase = {:?}\n", file.to_str().unwrap()),
    )
    .unwrap();
    let mut check = env.command(&["check", "--deep"]);
    check.env("STOKSYNC_CONFIG", &config);
    let out = common::output(check, "stoksync check --deep", Duration::from_secs(120)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("integrity: ok") && text.contains("journal: ok"),
        "{text}"
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .unwrap();
    let (off, movements): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM stock s WHERE s.quantity !=
                 (SELECT COALESCE(SUM(delta), 0) FROM movements m WHERE m.sku = s.sku)),
                (SELECT COUNT(*) FROM movements)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(off, 0, "{}: a balance off its journal", file.display());
    movements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_check_names_a_balance_moved_behind_the_journal() {
    let env = Env::new(Knobs::default()).await;
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,5\nÇANTA,2\nSİLGİ,1\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    env.ok(&["stock", "adjust", "ÇANTA", "-3", "--reason", "satış"])
        .await;
    let clean = env.ok(&["check", "--deep"]).await;
    assert!(clean.contains("journal: ok"), "{clean}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.database().display()))
        .await
        .unwrap();
    for sql in [
        "UPDATE stock SET quantity = 50 WHERE sku = 'KALEM-1'",
        "UPDATE stock SET quantity = 0 WHERE sku = 'ÇANTA'",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let out = env.run(&["check", "--deep"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SKU KALEM-1: balance 50, journal sums to 5")
            && text.contains("SKU ÇANTA: balance 0, journal sums to -1")
            && !text.contains("SİLGİ"),
        "{}",
        describe(&out)
    );
    // Without --deep the check does not read the journal.
    env.ok(&["check"]).await;
}
