//! The bar under other scaling laws: every scenario of the README's bar
//! table (the shipped ones, `tests/fixtures/holdout/` and
//! `tests/fixtures/holdout-cycles/`) run again with the simulated job's
//! Universal Scalability Law replaced, the references (`seed`,
//! `msf-builtin`, `flink-operator`) and a policy with their defaults, and
//! the policy judged by the bar against them.
//!
//! The policies' own defaults are the simulator's law (sigma 0.02, kappa
//! 0.0002); this shows what is left of the bar when the job scales
//! otherwise. Run from a checkout:
//!
//! ```text
//! cargo run --release --example law_sweep -- \
//!     --compare '{"rate": {"usl_fit_secs": 0, "catch_up_knee": 0}}'
//! ```
//!
//! Arguments: `--policy NAME` (default `predictive`); `--params JSON`,
//! parameters overriding the preset's (default `{}`); `--compare JSON`,
//! a second set of parameters to run beside the first; `--law
//! SIGMA:KAPPA`, repeatable (default: the simulator's, 3x heavier, 3x the
//! contention, 3x the coherency, half, and linear); `--jobs N` (default
//! 2). It prints, per law and parameter set: the comparisons of the bar
//! met (of 3 per scenario), the scenarios where all three are, the
//! violation seconds summed over the scenarios, and the geometric mean
//! of the efficiencies.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flinkscale::sim::Scenario;
use flinkscale::sim::Scores;
use flinkscale::sim::bench::{self, REFERENCES};
use flinkscale::sim::presets::PolicyChoice;

/// The folders of the bar table's scenarios, from the checkout's root.
const FOLDERS: [&str; 3] = [
    "tests/scenarios",
    "tests/fixtures/holdout",
    "tests/fixtures/holdout-cycles",
];

/// The laws run when none is given: the simulator's own, three times
/// heavier, three times the contention, three times the coherency, half,
/// and linear.
const LAWS: [(f64, f64); 6] = [
    (0.02, 0.0002),
    (0.06, 0.0006),
    (0.06, 0.0002),
    (0.02, 0.0006),
    (0.01, 0.0001),
    (0.0, 0.0),
];

/// One run to make: a law, a scenario, a policy with its parameters.
struct Job {
    law: usize,
    scenario: usize,
    /// `None` for a reference (its index in [`REFERENCES`]), else the
    /// parameter set's index.
    set: Option<usize>,
    reference: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("law_sweep: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut policy = "predictive".to_owned();
    let mut sets = vec!["{}".to_owned()];
    let mut laws = Vec::new();
    let mut jobs = 2usize;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--policy" => policy = value("--policy")?,
            "--params" => sets[0] = value("--params")?,
            "--compare" => sets.push(value("--compare")?),
            "--law" => {
                let law = value("--law")?;
                let parsed = law
                    .split_once(':')
                    .and_then(|(s, k)| Some((s.parse().ok()?, k.parse().ok()?)));
                laws.push(parsed.ok_or(format!("--law {law:?}: expected SIGMA:KAPPA"))?);
            }
            "--jobs" => {
                jobs = value("--jobs")?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--jobs needs a whole number of at least 1")?;
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if laws.is_empty() {
        laws = LAWS.to_vec();
    }
    let params: Vec<serde_json::Map<String, serde_json::Value>> = sets
        .iter()
        .map(|json| serde_json::from_str(json).map_err(|e| format!("parameters {json:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let mut files: Vec<PathBuf> = Vec::new();
    for folder in FOLDERS {
        let found = bench::scenario_files(Path::new(folder))
            .map_err(|e| format!("{folder} (run from the checkout's root): {e}"))?;
        files.extend(found);
    }
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut queue = Vec::new();
    for law in 0..laws.len() {
        for scenario in 0..scenarios.len() {
            for reference in 0..REFERENCES.len() {
                queue.push(Job {
                    law,
                    scenario,
                    set: None,
                    reference,
                });
            }
            for set in 0..params.len() {
                queue.push(Job {
                    law,
                    scenario,
                    set: Some(set),
                    reference: 0,
                });
            }
        }
    }
    let total = queue.len();
    let queue = Mutex::new(queue);
    let done: Mutex<Vec<(Job, Scores)>> = Mutex::new(Vec::with_capacity(total));
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let Some(job) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    let (sigma, kappa) = laws[job.law];
                    let mut scenario = scenarios[job.scenario].clone();
                    for app in &mut scenario.applications {
                        app.params.usl_sigma = sigma;
                        app.params.usl_kappa = kappa;
                    }
                    let choice = match job.set {
                        None => PolicyChoice {
                            name: REFERENCES[job.reference].to_owned(),
                            params: serde_json::Map::new(),
                        },
                        Some(set) => PolicyChoice {
                            name: policy.clone(),
                            params: params[set].clone(),
                        },
                    };
                    match bench::run_one(&scenario, &choice, None) {
                        Ok((_, outcome)) => done.lock().expect("done").push((job, outcome.scores)),
                        Err(e) => {
                            *failed.lock().expect("failed") =
                                Some(format!("{} on {}: {e}", choice.name, scenario.name));
                            queue.lock().expect("queue").clear();
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("failed") {
        return Err(e);
    }
    let done = done.into_inner().expect("done");
    let scores = |law: usize, scenario: usize, set: Option<usize>, reference: usize| {
        done.iter()
            .find(|(j, _)| {
                j.law == law
                    && j.scenario == scenario
                    && j.set == set
                    && (set.is_some() || j.reference == reference)
            })
            .map(|(_, s)| s)
            .expect("every run is done")
    };
    println!(
        "`{policy}` on {} scenarios under each law (bar: SLO violation s <= the reference's + 30 \
         and efficiency >= 1.25 x the reference's, against {}):\n",
        scenarios.len(),
        REFERENCES.join(", ")
    );
    println!(
        "| law (sigma / kappa) | parameters | comparisons met | rows met | violation s | efficiency (geometric mean) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (law, (sigma, kappa)) in laws.iter().enumerate() {
        for (set, json) in sets.iter().enumerate() {
            let (mut met, mut rows, mut violations, mut log_efficiency) = (0, 0, 0u64, 0.0);
            for scenario in 0..scenarios.len() {
                let candidate = scores(law, scenario, Some(set), 0);
                let mut all = true;
                for reference in 0..REFERENCES.len() {
                    let ok = bench::bar_verdict(candidate, scores(law, scenario, None, reference))
                        == "met";
                    met += usize::from(ok);
                    all &= ok;
                }
                rows += usize::from(all);
                violations += candidate.slo_violation_secs;
                log_efficiency += candidate.efficiency.max(f64::MIN_POSITIVE).ln();
            }
            println!(
                "| {sigma} / {kappa} | `{json}` | {met} of {} | {rows} of {} | {violations} | {:.3} |",
                REFERENCES.len() * scenarios.len(),
                scenarios.len(),
                (log_efficiency / scenarios.len() as f64).exp()
            );
        }
    }
    eprintln!(
        "{total} runs in {:.1} s on {jobs} thread(s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
