//! The HTML report of a simulated run, opened in a real browser (headless
//! Chromium, the Debian package `chromium`): the DOM Chromium builds has
//! the three plots with long polylines, the SLO line and the scores, and a
//! screenshot of it is a real picture, not a blank page.
//!
//! Needs the shipped plugins (`cargo plugins`) and `/usr/bin/chromium`
//! (`scripts/test.sh` installs it); without either the test fails and says
//! so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flinkscale::sim::bench::run_one;
use flinkscale::sim::presets::PolicyChoice;
use flinkscale::sim::report_html::write_report;
use flinkscale::sim::{Scenario, report_html};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `page` with `extra` arguments and a fresh
/// profile; its stdout.
fn chromium(page: &Path, profile: &Path, extra: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install the Debian package with \
         `apt-get install -y chromium` (scripts/test.sh does it)"
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(status) => {
                assert!(status.success(), "chromium failed: {status}");
                break;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish within 120 s");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    reader.join().expect("stdout reader")
}

/// The markup of the `<svg>` element with this id.
fn svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the rendered DOM"));
    let start = dom[..start].rfind("<svg").expect("an svg element");
    let end = dom[start..].find("</svg>").expect("closed svg") + start;
    &dom[start..end]
}

/// The number of points of each `<polyline class="CLASS">` in `svg`.
fn polyline_points(svg: &str, class: &str) -> usize {
    let marker = format!("<polyline class=\"{class}\"");
    let at = svg
        .find(&marker)
        .unwrap_or_else(|| panic!("no {class} polyline"));
    let rest = &svg[at..];
    let points = rest.find("points=\"").expect("points") + "points=\"".len();
    let end = rest[points..].find('"').expect("end of points") + points;
    rest[points..end].split_whitespace().count()
}

#[test]
fn the_report_renders_its_plots_and_scores_in_chromium() {
    let scenario_path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/step.toml");
    let scenario = Scenario::load(&scenario_path).expect("step scenario");
    let choice = PolicyChoice {
        name: "seed".into(),
        params: serde_json::Map::new(),
    };
    let (report, outcome) =
        run_one(&scenario, &choice, None).unwrap_or_else(|e| panic!("the seed policy runs: {e}"));
    assert!(report.scores.rescales > 0, "something to mark on the plot");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = write_report(
        &dir.path().join("report"),
        &scenario,
        &report,
        &outcome.world,
    )
    .expect("report written");
    let html = std::fs::read_to_string(&page).expect("report readable");
    for forbidden in ["http://", "https://", "<script", "<link"] {
        let allowed = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        let found = html.matches(forbidden).count();
        let found = if forbidden == "http://" {
            found - allowed
        } else {
            found
        };
        assert_eq!(found, 0, "self-contained: no {forbidden} in the page");
    }

    let dom = chromium(
        &page,
        &dir.path().join("profile-dom"),
        &["--dump-dom".to_owned()],
    );
    assert!(dom.contains("<h1>"), "Chromium rendered a page: {dom:.300}");

    // 7200 s of load and lag: downsampled, but far more than a few points.
    let load = svg(&dom, "plot-load-app");
    assert!(polyline_points(load, "load") >= 500, "load line");
    assert!(polyline_points(load, "capacity") >= 500, "capacity line");
    assert!(load.contains("records/s") && load.contains("time (min)"));
    assert!(
        polyline_points(load, "load") <= report_html::MAX_POINTS,
        "downsampled"
    );

    let kpu = svg(&dom, "plot-kpu-app");
    // A step line: two points per change plus the ends.
    let changes = outcome.world.history("app").expect("history").updates.len();
    assert_eq!(polyline_points(kpu, "kpu"), 2 * changes + 2, "KPU steps");
    assert_eq!(
        kpu.matches("class=\"rescale\"").count(),
        changes,
        "one mark per rescale"
    );

    let lag = svg(&dom, "plot-lag-app");
    assert!(polyline_points(lag, "lag") >= 500, "lag line");
    assert!(lag.contains("class=\"slo\""), "the SLO line");
    assert!(lag.contains("SLO 60 s"), "the SLO is labelled");

    let scores_at = dom.find("id=\"scores\"").expect("scores table");
    let scores = &dom[scores_at..];
    let violations = format!(
        "<td><code>slo_violation_secs</code></td><td class=\"num\">{}</td>",
        report.scores.slo_violation_secs
    );
    assert!(scores.contains(&violations), "violations in the table");
    assert!(scores.contains(&format!("{:.3}", report.scores.kpu_hours)));
    // The plugins did not fail: counted as none, and no warning.
    assert!(
        scores.contains("<td><code>plugin_failures</code></td><td class=\"num\">0</td>"),
        "plugin failures in the table"
    );
    assert!(!dom.contains("class=\"warning\""), "no failure warning");
    assert!(dom.contains(&report.policy.wasm_sha256), "the wasm hash");

    let png = dir.path().join("report.png");
    chromium(
        &page,
        &dir.path().join("profile-png"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,2200".to_owned(),
        ],
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    // A blank page of this size is about 13 KB; the plots and tables make
    // it several times that.
    assert!(
        bytes.len() > 60 * 1024,
        "the screenshot shows something ({} bytes)",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("FLINKSCALE_KEEP_REPORT") {
        let _ = std::fs::copy(&png, Path::new(&keep).join("report.png"));
        let _ = std::fs::copy(&page, Path::new(&keep).join("report.html"));
    }
}
