//! The benchmark table in the README is what `flinkscale bench` produces
//! from this checkout: every shipped scenario x every preset policy is run
//! again here (in-process, the same code as `bench`) and each README row is
//! compared with its run, value by value, at the precision the README
//! prints.
//!
//! Needs the shipped plugins (`cargo plugins`). When a policy or the model
//! changes on purpose, run `cargo plugins && cargo run -- bench` and copy
//! the new rows into the README.

use std::collections::BTreeMap;
use std::path::Path;

use flinkscale::sim::bench::{self, BenchOptions};
use flinkscale::sim::presets::{PRESETS, shipped_plugin_dir};

/// The README's benchmark rows, by (scenario, policy): the cells after the
/// policy, as printed.
fn readme_rows(readme: &str) -> BTreeMap<(String, String), Vec<String>> {
    let header = "| scenario | policy | KPU-hours | cost $ | SLO violation s | max lag s | p99 lag s | rescales | efficiency |";
    let start = readme
        .find(header)
        .expect("the README has the benchmark table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('*').to_owned())
                .collect();
            ((cells[0].clone(), cells[1].clone()), cells[2..].to_vec())
        })
        .collect()
}

#[test]
fn the_readme_table_is_what_bench_produces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let expected = readme_rows(&readme);
    let scenarios =
        bench::scenario_files(&bench::default_scenario_dir()).expect("the shipped scenarios");
    let result = bench::run(&BenchOptions {
        scenarios,
        policies: PRESETS.iter().map(|p| (*p).to_owned()).collect(),
        plugin_dir: shipped_plugin_dir(),
        jobs: 2,
        report_dir: None,
    })
    .expect("the benchmark runs (build the plugins with `cargo plugins`)");
    let mut wrong = Vec::new();
    for row in &result.rows {
        let s = &row.scores;
        let measured = vec![
            format!("{:.2}", s.kpu_hours),
            format!("{:.2}", s.cost_usd),
            s.slo_violation_secs.to_string(),
            format!("{:.0}", s.max_lag_secs),
            format!("{:.0}", s.p99_lag_secs),
            s.rescales.to_string(),
            format!("{:.3}", s.efficiency),
        ];
        let key = (row.scenario.clone(), row.policy.name.clone());
        match expected.get(&key) {
            Some(cells) if *cells == measured => {}
            Some(cells) => wrong.push(format!("{key:?}: README {cells:?}, bench {measured:?}")),
            None => wrong.push(format!("{key:?}: not in the README, bench {measured:?}")),
        }
    }
    assert_eq!(
        expected.len(),
        result.rows.len(),
        "the README has a row per run and no other"
    );
    assert!(
        wrong.is_empty(),
        "the README's benchmark table is out of date (`cargo run -- bench`):\n{}",
        wrong.join("\n")
    );
}
