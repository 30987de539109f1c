//! `mapping import` with the real binary: a row never moves a listing to a
//! SKU the ledger does not know, never takes a listing from another SKU
//! without `--relink`, and a move is reported, journaled and pushed.

mod common;

use common::{Env, Knobs, describe};
use serde_json::Value;

const HEADER: &str = "sku,provider,listing_id,variant_id\n";

/// KALEM-1 (10) sold on BaZaaRDan listing 5001, KALEM-2 (4) not linked yet.
async fn seeded() -> Env {
    let env = Env::new(Knobs::default()).await;
    env.fake.add_listing(5001, None, "KALEM-1", 10);
    env.fake.add_listing(5002, None, "KALEM-2", 4);
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,10\nKALEM-2,4\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    let map = env.write("map.csv", &format!("{HEADER}KALEM-1,bazaardan,5001,\n"));
    env.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    env
}

async fn list(env: &Env) -> Value {
    serde_json::from_str(&env.ok(&["mapping", "list", "--json"]).await).unwrap()
}

/// (sku, listing_id) of every link.
async fn links(env: &Env) -> Vec<(String, String)> {
    list(env).await["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_string(),
                l["listing_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(sku: &str, listing: &str) -> (String, String) {
    (sku.to_string(), listing.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_row_never_takes_a_listing_silently() {
    let env = seeded().await;
    assert_eq!(links(&env).await, vec![pair("KALEM-1", "5001")]);

    // An unknown SKU is refused with its line; the good row beside it is not
    // imported either, and the listing stays with KALEM-1.
    let bad = env.write(
        "unknown.csv",
        &format!("{HEADER}KALEM-2,bazaardan,5002,\nNO-SUCH-SKU,bazaardan,5001,\n"),
    );
    let out = env.run(&["mapping", "import", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: SKU `NO-SUCH-SKU` is not in the ledger")
            && err.contains("import its stock first"),
        "{}",
        describe(&out)
    );
    assert!(!err.contains("line 2"), "line 2 is good: {err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert_eq!(links(&env).await, vec![pair("KALEM-1", "5001")]);

    // Rows the file itself gets wrong and rows the ledger refuses are
    // reported together.
    let mixed = env.write(
        "mixed.csv",
        &format!("{HEADER}KALEM-2,ebay,1,\nGHOST,bazaardan,5002,\n"),
    );
    let out = env
        .run(&["mapping", "import", mixed.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 bad row(s)")
            && err.contains("line 2: provider `ebay`")
            && err.contains("line 3: SKU `GHOST`"),
        "{}",
        describe(&out)
    );

    // A listing linked to another SKU is refused, naming that SKU.
    let steal = env.write(
        "steal.csv",
        &format!("{HEADER}KALEM-2,bazaardan,5002,\nKALEM-2,bazaardan,5001,\n"),
    );
    let out = env
        .run(&["mapping", "import", steal.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: listing bazaardan/5001 is linked to SKU `KALEM-1`")
            && err.contains("--relink"),
        "{}",
        describe(&out)
    );
    assert_eq!(links(&env).await, vec![pair("KALEM-1", "5001")]);

    // Re-stating a link is fine and changes nothing.
    let same = env.write("same.csv", &format!("{HEADER}KALEM-1,bazaardan,5001,\n"));
    let out = env.ok(&["mapping", "import", same.to_str().unwrap()]).await;
    assert!(out.contains("imported 1 link(s)"), "{out}");
    assert!(!out.contains("moved"), "{out}");
    assert_eq!(links(&env).await, vec![pair("KALEM-1", "5001")]);

    // The listing shows KALEM-1's 10, confirmed.
    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.fake.listing_stock(5001, None), Some(10));

    // --relink moves it, says so, journals it and forgets the confirmation,
    // so the next sync pushes KALEM-2's quantity.
    let out = env
        .ok(&["mapping", "import", "--relink", steal.to_str().unwrap()])
        .await;
    assert!(
        out.contains("moved bazaardan/5001 from KALEM-1 to KALEM-2"),
        "{out}"
    );
    assert!(out.contains("imported 2 link(s)"), "{out}");
    assert_eq!(
        links(&env).await,
        vec![pair("KALEM-2", "5001"), pair("KALEM-2", "5002")]
    );
    let listed = list(&env).await;
    let moved = listed["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["listing_id"] == "5001")
        .unwrap()
        .clone();
    assert_eq!(moved["confirmed_qty"], Value::Null, "{moved}");
    let changes = listed["link_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{listed}");
    let c = &changes[0];
    assert_eq!(
        (
            c["provider"].as_str(),
            c["listing_id"].as_str(),
            c["variant_id"].as_str(),
            c["old_sku"].as_str(),
            c["new_sku"].as_str(),
        ),
        (
            Some("bazaardan"),
            Some("5001"),
            Some(""),
            Some("KALEM-1"),
            Some("KALEM-2")
        ),
        "{c}"
    );
    assert_eq!(
        c["source"].as_str().unwrap(),
        format!("mapping import {}", steal.display())
    );
    assert!(c["at_ms"].as_i64().unwrap() > 0, "{c}");
    let text = env.ok(&["mapping", "list"]).await;
    assert!(
        text.contains("moved bazaardan/5001 from KALEM-1 to KALEM-2"),
        "{text}"
    );

    // Importing the same file again with --relink moves nothing more.
    let out = env
        .ok(&["mapping", "import", "--relink", steal.to_str().unwrap()])
        .await;
    assert!(!out.contains("moved"), "{out}");
    assert_eq!(
        list(&env).await["link_changes"].as_array().unwrap().len(),
        1
    );

    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.fake.listing_stock(5001, None), Some(4));
    assert_eq!(env.fake.listing_stock(5002, None), Some(4));
}
