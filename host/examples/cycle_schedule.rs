//! A good real schedule of many rescales within a budget of SLO-violation
//! seconds, for scenarios where the load cycles (`diurnal`, `diurnal2`,
//! `twice-daily`): where `best_schedule`'s "one rescale up, then downs"
//! cannot follow the load, this one plans every rescale.
//!
//! It plans with the relaxed programme's planning variant
//! (`flinkscale::sim::bound::Relaxed::plan`: a clairvoyant schedule whose
//! restarts last as long as the model's and whose backlog is rounded up)
//! at a range of violation prices, replays each plan on the scenario's own
//! model exactly as `simulate` scores a policy's decisions
//! (`flinkscale::sim::schedule::replay`), and improves the best one on the
//! real model by local moves (`flinkscale::sim::schedule::improve`).
//! The verdict is the replay's: a schedule within `--budget` whose
//! efficiency reaches `--needed` shows the bar possible.
//!
//! ```text
//! cargo run --release --example cycle_schedule -- \
//!     tests/scenarios/diurnal.toml --budget 191 --needed 0.7638 --block 30 --buckets 500
//! ```
//!
//! Arguments: the scenario file; `--budget SECS`; `--needed E` (optional);
//! `--block SECS` (default 30; a divisor of the restart's 90 s keeps the
//! plan's billing exact), `--buckets N` (default 500) and `--cap SECS`
//! (default 200), the planning resolution, or `--per-second MERGE` to plan
//! with the per-second programme instead
//! (`flinkscale::sim::bound::Relaxed::plan_per_second`: restarts at any
//! second, exact backlogs, states within MERGE seconds of the peak rate
//! merged); `--start P` (default 64) and
//! `--solves N` (default 12), the price search; `--shifts S,S,..`
//! (default 600,120,30,10), the time moves of the local search, and
//! `--rounds N` (default 100), its most passes (0: none), and `--starts
//! N` (default 4), from how many of the distinct plans (best first); or `--schedule
//! T:K,T:K,..` to replay one given schedule (seconds : KPU) and stop, or,
//! with `--improve`, to improve it by the local search (with
//! `--keep-rescales`, never dropping one of its rescales).
//!
//! `--joint SPAN:STEP,SPAN:STEP,..` then improves the schedule (the given
//! one, or each local optimum) by moving all its rescales at once
//! (`flinkscale::sim::schedule::improve_jointly`): per stage, each rescale
//! tried alone every STEP seconds within SPAN either side, at its KPU or up
//! to `--levels N` (default 1) more or less, the options added up by a
//! knapsack over violation seconds and the `--verify N` (default 20) most
//! promising combinations replayed on the real model. On `diurnal`:
//!
//! ```text
//! cargo run --release --example cycle_schedule -- tests/scenarios/diurnal.toml \
//!     --budget 191 --needed 0.7632865515114127 --schedule 21919:6,32484:12,79109:9 \
//!     --joint 900:30,120:5,20:1
//! ```

use std::path::PathBuf;

use flinkscale::sim::Scenario;
use flinkscale::sim::bound::{Relaxed, Resolution};
use flinkscale::sim::schedule::{self, Found, JointSearch, JointStage, Rescale};

fn main() {
    if let Err(e) = run() {
        eprintln!("cycle_schedule: {e}");
        std::process::exit(2);
    }
}

fn parse_schedule(text: &str) -> Result<Vec<Rescale>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (t, k) = item
                .split_once(':')
                .ok_or_else(|| format!("--schedule item {item:?}: expected SECS:KPU"))?;
            Ok(Rescale {
                at_secs: t
                    .trim()
                    .parse()
                    .map_err(|_| format!("--schedule item {item:?}: {t:?} is not whole seconds"))?,
                kpu: k
                    .trim()
                    .parse()
                    .map_err(|_| format!("--schedule item {item:?}: {k:?} is not a KPU count"))?,
            })
        })
        .collect()
}

fn parse_stages(text: &str) -> Result<Vec<JointStage>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (span, step) = item
                .split_once(':')
                .ok_or_else(|| format!("--joint item {item:?}: expected SPAN:STEP (seconds)"))?;
            let secs = |what: &str, v: &str| {
                v.trim().parse::<u64>().map_err(|_| {
                    format!("--joint item {item:?}: {what} {v:?} is not whole seconds")
                })
            };
            let step_secs = secs("STEP", step)?;
            if step_secs == 0 {
                return Err(format!("--joint item {item:?}: STEP must be at least 1 s"));
            }
            Ok(JointStage {
                span_secs: secs("SPAN", span)?,
                step_secs,
            })
        })
        .collect()
}

fn show(label: &str, found: &Found) {
    let s = &found.scores;
    println!(
        "{label}: {} violation s, efficiency {:.4}, {:.2} KPU-hours, {} rescales: {}",
        s.slo_violation_secs,
        s.efficiency,
        s.kpu_hours,
        s.rescales,
        schedule::describe(&found.rescales)
    );
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut budget = None;
    let mut needed: Option<f64> = None;
    let mut resolution = Resolution {
        block_secs: 30,
        buckets: 500,
        cap_secs: 200.0,
    };
    let (mut start, mut solves, mut rounds, mut starts) = (64.0, 12usize, 100usize, 4usize);
    let mut shifts: Vec<u64> = vec![600, 120, 30, 10];
    let mut given: Option<Vec<Rescale>> = None;
    let mut per_second: Option<f64> = None;
    let mut improve_given = false;
    let mut keep = false;
    let mut joint: Vec<JointStage> = Vec::new();
    let (mut levels, mut verify) = (1u32, 20usize);
    while let Some(arg) = args.next() {
        let mut text = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{name} needs a number >= 0, not {v:?}"))
        };
        match arg.as_str() {
            "--budget" => budget = Some(number("--budget", text("--budget")?)? as u64),
            "--needed" => needed = Some(number("--needed", text("--needed")?)?),
            "--block" => {
                resolution.block_secs = number("--block", text("--block")?)?.max(1.0) as u64;
            }
            "--buckets" => {
                resolution.buckets = number("--buckets", text("--buckets")?)?.max(1.0) as usize;
            }
            "--cap" => resolution.cap_secs = number("--cap", text("--cap")?)?,
            "--per-second" => per_second = Some(number("--per-second", text("--per-second")?)?),
            "--start" => start = number("--start", text("--start")?)?,
            "--solves" => solves = number("--solves", text("--solves")?)? as usize,
            "--rounds" => rounds = number("--rounds", text("--rounds")?)? as usize,
            "--starts" => starts = number("--starts", text("--starts")?)? as usize,
            "--shifts" => {
                shifts = text("--shifts")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| format!("--shifts: {s:?} is not whole seconds"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--schedule" => given = Some(parse_schedule(&text("--schedule")?)?),
            "--improve" => improve_given = true,
            "--keep-rescales" => keep = true,
            "--joint" => joint = parse_stages(&text("--joint")?)?,
            "--levels" => levels = number("--levels", text("--levels")?)? as u32,
            "--verify" => verify = number("--verify", text("--verify")?)?.max(1.0) as usize,
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let path = path.ok_or("usage: cycle_schedule SCENARIO --budget SECS [--needed E] [--block SECS] [--buckets N] [--cap SECS] [--per-second MERGE] [--start P] [--solves N] [--shifts S,..] [--rounds N] [--starts N] [--schedule T:K,.. [--improve [--keep-rescales]]] [--joint SPAN:STEP,.. [--levels N] [--verify N]]")?;
    let budget = budget.ok_or("--budget SECS is required")?;
    let scenario = Scenario::load(&path).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let joint_empty = joint.is_empty();
    let search = JointSearch {
        stages: joint,
        levels,
        verify,
        rounds,
    };
    let jointly = |found: Found| {
        if search.stages.is_empty() {
            return found;
        }
        schedule::improve_jointly(&scenario, found, budget, &search, |f| {
            println!(
                "  jointly: {} violation s, efficiency {:.4} ({:.1} s): {}",
                f.scores.slo_violation_secs,
                f.scores.efficiency,
                started.elapsed().as_secs_f64(),
                schedule::describe(&f.rescales)
            );
        })
    };
    let found = if let Some(rescales) = given {
        let scores = schedule::replay(&scenario, &rescales)?;
        let found = Found { rescales, scores };
        if improve_given || !joint_empty {
            show("given", &found);
        }
        let found = if improve_given {
            schedule::improve_keeping(&scenario, found, budget, &shifts, rounds, keep, |f| {
                show("  improved", f);
            })
        } else {
            found
        };
        jointly(found)
    } else {
        let relaxed = Relaxed::from_scenario(&scenario)?;
        let model = match per_second {
            Some(merge) => {
                format!("planning per second, states merged within {merge} s of the peak rate")
            }
            None => format!(
                "planning at {} s blocks, {} buckets up to {} s of the peak rate",
                resolution.block_secs, resolution.buckets, resolution.cap_secs
            ),
        };
        println!(
            "{}: {} s, {model}, budget {budget} s",
            scenario.name,
            relaxed.lambda.len(),
        );
        let found = schedule::search_prices(
            &scenario,
            budget,
            start,
            solves,
            |price| match per_second {
                Some(merge) => Ok(relaxed.plan_per_second(price, merge)),
                None => relaxed.plan(resolution, price),
            },
            |price, found, planned| {
                println!(
                    "price {price:>10.3}: planned {planned} violation s; replayed {} violation s, efficiency {:.4}, {} rescales ({:.1} s): {}",
                    found.scores.slo_violation_secs,
                    found.scores.efficiency,
                    found.scores.rescales,
                    started.elapsed().as_secs_f64(),
                    schedule::describe(&found.rescales)
                );
            },
        )?;
        // Every distinct plan is a start of the local search: one over the
        // budget may lead to a better schedule within it than the best plan.
        let mut best: Option<Found> = None;
        for (i, plan) in found.into_iter().take(starts).enumerate() {
            show(&format!("plan {}", i + 1), &plan);
            let improved = schedule::improve(&scenario, plan, budget, &shifts, rounds, |f| {
                println!(
                    "  improved: {} violation s, efficiency {:.4}, {} rescales ({:.1} s)",
                    f.scores.slo_violation_secs,
                    f.scores.efficiency,
                    f.scores.rescales,
                    started.elapsed().as_secs_f64()
                );
            });
            show("  local optimum", &improved);
            let improved = jointly(improved);
            if best
                .as_ref()
                .is_none_or(|b| schedule::better(&improved.scores, &b.scores, budget))
            {
                best = Some(improved);
            }
        }
        best.ok_or("--solves 0: nothing planned")?
    };
    show("schedule", &found);
    let s = &found.scores;
    let within = s.slo_violation_secs <= budget;
    match needed {
        Some(e) if within && s.efficiency >= e => println!(
            "bar possible: {} violation s <= {budget}, efficiency {:.4} >= {e:.4}",
            s.slo_violation_secs, s.efficiency
        ),
        Some(e) => println!(
            "not shown possible: {} violation s (budget {budget}), efficiency {:.4} (needed {e:.4})",
            s.slo_violation_secs, s.efficiency
        ),
        None => {}
    }
    println!(
        "seconds:KPU {}",
        found
            .rescales
            .iter()
            .map(|r| format!("{}:{}", r.at_secs, r.kpu))
            .collect::<Vec<_>>()
            .join(",")
    );
    println!("run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
