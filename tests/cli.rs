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
