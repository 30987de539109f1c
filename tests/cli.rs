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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semicolon_csv_is_read_and_a_bad_csv_exits_1_as_other_bad_input() {
    let env = Env::new(Knobs::default()).await;
    let good = env.write(
        "sayim.csv",
        "\u{feff}sku;quantity\r\n\"ÇANTA,büyük\";7\r\nSİLGİ;3\r\n",
    );
    env.ok(&["stock", "import", good.to_str().unwrap()]).await;
    assert_eq!(env.quantity("ÇANTA,büyük").await, Some(7));
    assert_eq!(env.quantity("SİLGİ").await, Some(3));

    // A bad row, a wrong header, a missing file: exit 1, as a negative
    // count or an unknown SKU; 2 is for the config and the command line.
    let bad_row = env.write("bad.csv", "sku;quantity\nA;5\nB;1,5\n");
    let bad_header = env.write("header.csv", "sku;adet\nA;5\n");
    let missing = env.path("missing.csv");
    for (file, says) in [
        (
            &bad_row,
            "line 3: quantity `1,5` for `B` is not a whole number",
        ),
        (&bad_header, "header must be `sku,quantity`"),
        (&missing, "cannot read"),
    ] {
        let out = env.run(&["stock", "import", file.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{says}: {}",
            describe(&out)
        );
    }
    let negative = env
        .run(&["stock", "set", "SİLGİ", "-1", "--reason", "x"])
        .await;
    assert_eq!(negative.status.code(), Some(1), "{}", describe(&negative));
    assert_eq!(env.quantity("A").await, None, "nothing imported");
}
