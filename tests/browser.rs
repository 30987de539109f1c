//! The status page in a real headless browser (Debian's chromium, which
//! `.ci/run` installs): the DOM it renders carries the providers, the
//! movements and the empty-state notes, and a screenshot shows a page, not
//! a blank or an error.
//!
//! Built on a machine without chromium, the test is reported as ignored,
//! with the package to install (see `build.rs`); under CI (`CI=true`,
//! `.ci/run` installs chromium) it always runs, and fails without it. It
//! never passes without having rendered the page.

mod common;

use common::{Env, Knobs, wait_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless chromium with the flags a closed network needs.
async fn browse(chromium: &Path, profile: &Path, args: &[String]) -> std::process::Output {
    let mut c = tokio::process::Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(90), c.output())
        .await
        .expect("chromium finished in 90 s")
        .expect("chromium starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    stoksync_no_chromium,
    ignore = "needs chromium: apt-get install chromium (CI installs it)"
)]
async fn the_status_page_renders_in_chromium() {
    let chromium = chromium()
        .expect("no chromium on this machine: install Debian's package (apt-get install chromium)");
    let env = Env::new(Knobs::default()).await;
    env.fake.add_listing(501, None, "ÇANTA-1", 3);
    let s = env.write("stock.csv", "sku,quantity\nÇANTA-1,7\nSİLGİ-2,1\n");
    let m = env.write(
        "map.csv",
        "sku,provider,listing_id,variant_id\nÇANTA-1,bazaardan,501,\n",
    );
    env.ok(&["stock", "import", s.to_str().unwrap()]).await;
    env.ok(&["mapping", "import", m.to_str().unwrap()]).await;
    env.ok(&[
        "stock",
        "adjust",
        "ÇANTA-1",
        "-1",
        "--reason",
        "<b>kırık</b>",
    ])
    .await;
    // Sold twice over: oversold.
    env.ok(&["stock", "adjust", "SİLGİ-2", "-3", "--reason", "satış"])
        .await;
    let mut daemon = env.spawn(&["run"]);
    let url = format!("http://{}/", env.http);
    wait_for(Duration::from_secs(30), "the first push", || async {
        env.fake.listing_stock(501, None) == Some(6)
    })
    .await;

    let profile = tempfile::tempdir().unwrap();
    let out = browse(
        &chromium,
        profile.path(),
        &["--dump-dom".into(), url.clone()],
    )
    .await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium --dump-dom failed: {out:?}");
    for needle in [
        "<h1>stoksync</h1>",
        "<table id=\"providers\">",
        "bazaardan",
        "ÇANTA-1",
        "all loops alive",
        "<table id=\"oversold\">",
        "SİLGİ-2",
        "none: every order line is linked",
        "&lt;b&gt;kırık&lt;/b&gt;",
    ] {
        assert!(
            dom.contains(needle),
            "rendered DOM lacks `{needle}`:\n{dom}"
        );
    }

    let shot = profile.path().join("status.png");
    let out = browse(
        &chromium,
        profile.path(),
        &[format!("--screenshot={}", shot.display()), url],
    )
    .await;
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {out:?}"
    );
    if let Ok(keep) = std::env::var("STOKSYNC_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("a screenshot was written"),
    ));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 900));
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    // The page's background (#f6f7f9) fills most of it; dark text and the
    // white tables are there too: a rendered page, not a blank or an error.
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 3);
    let background = pixels
        .iter()
        .filter(|p| near(p, [0xf6, 0xf7, 0xf9]))
        .count();
    let white = pixels
        .iter()
        .filter(|p| near(p, [0xff, 0xff, 0xff]))
        .count();
    let dark = pixels
        .iter()
        .filter(|p| p[..3].iter().map(|&v| u32::from(v)).sum::<u32>() < 200)
        .count();
    let total = pixels.len();
    assert!(background * 4 > total, "background {background}/{total}");
    assert!(white * 50 > total, "tables {white}/{total}");
    assert!(dark * 500 > total, "text {dark}/{total}");

    let pid = daemon.id().unwrap().to_string();
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(60), daemon.wait()).await;
}
