//! The benchmark table in the README is what `flinkscale bench` produces
//! from this checkout: every shipped scenario x every preset policy is run
//! again here (in-process, the same code as `bench`), and the README's
//! table is compared line by line with the one `bench` writes to
//! `readme.md`, and the bar table under it as a whole.
//!
//! Needs the shipped plugins (`cargo plugins`). When a policy or the model
//! changes on purpose, run `cargo plugins && cargo run -- bench` and copy
//! `target/bench/readme.md` into the README.

use std::path::Path;

use flinkscale::sim::bench::{self, BenchOptions};
use flinkscale::sim::presets::PRESETS;

/// The README's benchmark table: from its header to its last row.
fn readme_table(readme: &str) -> String {
    let header = "| scenario | policy | KPU-hours |";
    let start = readme
        .find(header)
        .expect("the README has the benchmark table");
    readme[start..]
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_readme_table_is_what_bench_produces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    // What `bench` runs by default: the scenarios embedded in the binary.
    let shipped = bench::ShippedScenarios::write().expect("the shipped scenarios");
    let scenarios = bench::scenario_files(shipped.dir()).expect("the shipped scenarios");
    let result = bench::run(&BenchOptions {
        scenarios,
        policies: PRESETS.iter().map(|p| (*p).to_owned()).collect(),
        plugin_dir: None,
        jobs: 2,
        report_dir: None,
        lazy_polling: true,
    })
    .expect("the benchmark runs (build the plugins with `cargo plugins`)");
    let expected = bench::readme_table(&result);
    let found = readme_table(&readme);
    let wrong: Vec<String> = expected
        .lines()
        .zip(found.lines())
        .filter(|(e, f)| e != f)
        .map(|(e, f)| format!("README {f}\nbench  {e}"))
        .collect();
    assert_eq!(
        found.lines().count(),
        expected.lines().count(),
        "the README has a row per run and no other"
    );
    assert!(
        wrong.is_empty(),
        "the README's benchmark table is out of date: copy target/bench/readme.md \
         (written by `cargo run -- bench`) into it:\n{}",
        wrong.join("\n")
    );
    // The bar per scenario follows the table, as `readme.md` has it.
    let bar = bench::bar_table(&result);
    assert!(
        readme.contains(&format!("{expected}\n{bar}")),
        "the README's bar table is out of date: copy target/bench/readme.md \
         (written by `cargo run -- bench`) into it; bench has:\n{bar}"
    );
}
