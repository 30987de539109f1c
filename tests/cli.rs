//! The command line as a newcomer meets it, with the real binary: logs
//! without escape codes in a file or pipe, clear refusals of bad input.

mod common;

use common::{Env, Knobs, describe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let env = Env::new(Knobs::default()).await;
    env.fake.add_listing(501, None, "KALEM-1", 3);
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,5\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    let map = env.write(
        "map.csv",
        "sku,provider,listing_id,variant_id\nKALEM-1,bazaardan,501,\n",
    );
    env.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    // `sync --once` logs at info and above (RUST_LOG=stoksync=debug here);
    // stderr is a pipe.
    let out = env.run(&["sync", "--once"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() >= 2,
        "some log lines to look at: {}",
        describe(&out)
    );
    assert!(
        !err.contains("\x1b["),
        "escape codes in piped logs: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_an_unknown_sku_says_so() {
    let env = Env::new(Knobs::default()).await;
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,5\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    for args in [
        &["stock", "history", "KALEM-9"][..],
        &["stock", "history", "KALEM-9", "--json"][..],
    ] {
        let out = env.run(args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no SKU `KALEM-9`"), "{}", describe(&out));
        assert!(out.stdout.is_empty(), "{}", describe(&out));
    }
    let known = env.ok(&["stock", "history", "KALEM-1"]).await;
    assert!(known.contains("erp_set"), "{known}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_reason_is_refused_as_the_api_refuses_it() {
    let env = Env::new(Knobs::default()).await;
    let stock = env.write("stock.csv", "sku,quantity\nKALEM-1,5\n");
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    for (cmd, n) in [("set", "9"), ("adjust", "-1")] {
        for reason in ["", "   "] {
            let out = env
                .run(&["stock", cmd, "KALEM-1", n, "--reason", reason])
                .await;
            assert_eq!(
                out.status.code(),
                Some(1),
                "{cmd} {reason:?}: {}",
                describe(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("`reason` must say why"),
                "{}",
                describe(&out)
            );
        }
    }
    assert_eq!(env.quantity("KALEM-1").await, Some(5), "nothing moved");
    let history = env.ok(&["stock", "history", "KALEM-1", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{history}");
}
