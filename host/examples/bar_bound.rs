//! An upper bound on the efficiency any KPU-deciding policy (even one that
//! knows the future) can reach on a one-application scenario within a
//! budget of SLO-violation seconds, and whether that rules out a bar.
//!
//! `best_schedule` searches real schedules, so it finds a lower bound on
//! what is reachable; this program solves a relaxed model exactly (dynamic
//! programming over blocks, KPU levels and a backlog grid rounded in the
//! policy's favour; `flinkscale::sim::bound` says why each simplification
//! can only help the policy), so it finds an upper bound. When the bound is
//! below the efficiency needed, no policy can meet the bar on that scenario.
//!
//! ```text
//! cargo run --release --example bar_bound -- \
//!     tests/fixtures/holdout/ramp-down.toml --budget 101 --needed 0.67625 --block 3 --cap 200
//! ```
//!
//! Arguments: the scenario file; `--budget SECS`, the most violation seconds
//! allowed; `--needed E` (optional), the efficiency the bar asks for;
//! `--price P` (repeatable), the price of one violation second in
//! KPU-seconds, or `--price auto` (the default): search the price
//! (`flinkscale::sim::bound::PriceSearch`: from `--start P`, default 64,
//! at most `--solves N`, default 12, stopping within 0.1 % of the least
//! bound any price can give, or, with `--needed`, as soon as the verdict
//! is known); `--block SECS` (default 10), `--buckets N` (default 1000)
//! and `--cap SECS` (default 600), the relaxed model's resolution (a finer
//! one gives a tighter bound; every one gives a valid bound). It prints,
//! per price, the bound and the relaxed optimum's schedule (KPU-hours,
//! violation seconds, rescales), then the best bound (and, searched, the
//! floor no price goes below), the verdict and the run time.
//!
//! `--per-second MERGE` solves the per-second programme instead of the
//! blocks (`flinkscale::sim::bound::Relaxed::solve_per_second`): restarts
//! at any second lasting exactly as long as the model's, exact backlogs,
//! and states of one level merged (in the policy's favour) when their
//! backlogs lie within MERGE seconds of the peak input rate. Its floor is
//! a guide only (a merged state need not be a schedule).
//!
//! `--constrained MERGE` solves the per-second programme with the budget in
//! its state instead of a price
//! (`flinkscale::sim::bound::Relaxed::solve_within_budget`): the least
//! KPU-seconds within the budget, states of equal violation seconds merged
//! when their backlogs lie within MERGE seconds of the peak input rate. No
//! price, so no duality gap. With MERGE 0 it also prints the schedule
//! reaching the bound and replays it on the scenario's model
//! (`flinkscale::sim::schedule::replay`): if the replay is within the
//! budget and reaches `--needed`, the bar is possible.
//!
//! With `--needed`, `--constrained` answers only the yes/no question
//! (`flinkscale::sim::bound::Relaxed::decide_within_budget`): every
//! `--prune-every SECS` (default 600) it drops the states whose
//! KPU-seconds so far plus a lower bound on those still to come (the block
//! programme's priced cost-to-go at `--block`/`--buckets`/`--cap`, at each
//! `--price`, or at the prices of a block price search when none is given)
//! already exceed clairvoyant / needed. That is sound for the verdict, and
//! the bound printed is one whenever it is at least `--needed`; below, it
//! prints that no state survived within the budget and the limit. It
//! prints a progress line on stderr every simulated hour. `--schedule`
//! keeps the rescales reaching the least state (merged or not), prints
//! them and replays them on the model: a start for `cycle_schedule
//! --schedule ... --improve`.

use std::path::PathBuf;

use flinkscale::sim::Scenario;
use flinkscale::sim::bound::{NeededPrune, PriceSearch, Relaxed, Resolution, SearchStop};
use flinkscale::sim::schedule;

fn main() {
    if let Err(e) = run() {
        eprintln!("bar_bound: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut budget = None;
    let mut needed: Option<f64> = None;
    let mut prices: Vec<f64> = Vec::new();
    let mut search = PriceSearch::default();
    let mut resolution = Resolution::default();
    let mut per_second: Option<f64> = None;
    let mut constrained: Option<f64> = None;
    let mut prune_every = 600u64;
    let mut keep_schedule = false;
    while let Some(arg) = args.next() {
        if arg == "--price" {
            match args.next().as_deref() {
                Some("auto") => {}
                v => prices.push(
                    v.and_then(|v| v.parse::<f64>().ok())
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or("--price needs a price >= 0 or auto")?,
                ),
            }
            continue;
        }
        let mut value = |name: &str, what: &str| -> Result<f64, String> {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match arg.as_str() {
            "--budget" => budget = Some(value("--budget", "a number of seconds >= 0")? as u64),
            "--needed" => needed = Some(value("--needed", "an efficiency >= 0")?),
            "--start" => search.start = value("--start", "a price >= 0")?,
            "--solves" => {
                search.max_solves = value("--solves", "a whole number >= 1")?.max(1.0) as usize;
            }
            "--block" => {
                resolution.block_secs =
                    value("--block", "a whole number of seconds >= 1")?.max(1.0) as u64;
            }
            "--buckets" => {
                resolution.buckets = value("--buckets", "a whole number >= 1")?.max(1.0) as usize;
            }
            "--cap" => resolution.cap_secs = value("--cap", "a number of seconds > 0")?,
            "--per-second" => {
                per_second = Some(value("--per-second", "a merge width in seconds >= 0")?);
            }
            "--constrained" => {
                constrained = Some(value("--constrained", "a merge width in seconds >= 0")?);
            }
            "--schedule" => keep_schedule = true,
            "--prune-every" => {
                prune_every =
                    value("--prune-every", "a whole number of seconds >= 1")?.max(1.0) as u64;
            }
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let path = path.ok_or("usage: bar_bound SCENARIO --budget SECS [--needed E] [--price P|auto]... [--start P] [--solves N] [--block SECS] [--buckets N] [--cap SECS] [--per-second MERGE | --constrained MERGE [--prune-every SECS] [--schedule]]")?;
    let budget = budget.ok_or("--budget SECS is required")?;
    let scenario = Scenario::load(&path).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let relaxed = Relaxed::from_scenario(&scenario)?;
    let clairvoyant = relaxed.clairvoyant_kpu_secs;
    if let Some(merge) = constrained {
        let prune = match needed {
            Some(needed) => {
                if prices.is_empty() {
                    let outcome = relaxed.least_ceiling(
                        resolution,
                        budget,
                        &PriceSearch {
                            needed: None,
                            ..search
                        },
                    );
                    prices = outcome.optima.iter().map(|o| o.price).collect();
                }
                Some(NeededPrune {
                    needed,
                    resolution,
                    prices,
                    every_secs: prune_every,
                })
            }
            None => None,
        };
        return constrained_bound(
            &scenario,
            &relaxed,
            budget,
            prune.as_ref(),
            merge,
            keep_schedule,
            started,
        );
    }
    let model = match per_second {
        Some(merge) => {
            format!("the per-second programme, states merged within {merge} s of the peak rate")
        }
        None => format!(
            "block {} s, {} buckets up to {} s of the peak rate",
            resolution.block_secs, resolution.buckets, resolution.cap_secs
        ),
    };
    println!(
        "{}: {} s, clairvoyant {:.3} KPU-hours, {} KPU levels, {model}, budget {budget} s",
        scenario.name,
        relaxed.lambda.len(),
        clairvoyant / 3600.0,
        relaxed.levels().len(),
    );
    let print = |o: &flinkscale::sim::bound::PricedOptimum| {
        println!(
            "price {:>10.3}: bound {:.3}  (relaxed optimum {:.3} KPU-hours, {} violation s, {} rescales)",
            o.price,
            o.efficiency_ceiling(clairvoyant, budget),
            o.kpu_secs / 3600.0,
            o.violation_secs,
            o.rescales
        );
    };
    let best = if prices.is_empty() {
        search.needed = needed;
        let outcome = match per_second {
            Some(merge) => relaxed.least_ceiling_per_second(merge, budget, &search),
            None => relaxed.least_ceiling(resolution, budget, &search),
        };
        outcome.optima.iter().for_each(print);
        let why = match outcome.stop {
            SearchStop::Converged => "converged",
            SearchStop::RuledOut => "below the needed efficiency",
            SearchStop::CannotRuleOut => "no price can go below the needed efficiency",
            SearchStop::SolvesUsed => "--solves used",
        };
        println!(
            "price search: {} solves, stopped: {why}; least bound at price {:.3}; no price gives a bound below {:.3}",
            outcome.optima.len(),
            outcome.price,
            outcome.floor
        );
        outcome.ceiling
    } else {
        let mut best = f64::INFINITY;
        for price in prices {
            let o = match per_second {
                Some(merge) => relaxed.solve_per_second(price, merge),
                None => relaxed.solve(resolution, price),
            };
            best = best.min(o.efficiency_ceiling(clairvoyant, budget));
            print(&o);
        }
        best
    };
    println!("best bound within {budget} violation seconds: efficiency <= {best:.4}");
    if let Some(e) = needed {
        if best < e {
            println!("bar ruled out: no policy reaches {e:.4} (bound {best:.4})");
        } else {
            println!("bar not ruled out: bound {best:.4} >= needed {e:.4}");
        }
    }
    println!("run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `--constrained MERGE`: the least KPU-seconds within the budget, its
/// bound, and (unmerged) the schedule reaching it, replayed on the model.
fn constrained_bound(
    scenario: &Scenario,
    relaxed: &Relaxed,
    budget: u64,
    prune: Option<&NeededPrune>,
    merge: f64,
    keep_schedule: bool,
    started: std::time::Instant,
) -> Result<(), String> {
    let needed = prune.map(|p| p.needed);
    let clairvoyant = relaxed.clairvoyant_kpu_secs;
    println!(
        "{}: {} s, clairvoyant {:.3} KPU-hours, {} KPU levels, the per-second programme with the budget in its state, states of equal violations merged within {merge} s of the peak rate, budget {budget} s",
        scenario.name,
        relaxed.lambda.len(),
        clairvoyant / 3600.0,
        relaxed.levels().len(),
    );
    let exact = merge == 0.0 && prune.is_none();
    let o = match prune {
        Some(p) => {
            let prices: Vec<String> = p.prices.iter().map(|p| format!("{p:.4}")).collect();
            println!(
                "pruned every {} s by --needed {}: block programme {} s / {} buckets / {} s at prices {}",
                p.every_secs,
                p.needed,
                p.resolution.block_secs,
                p.resolution.buckets,
                p.resolution.cap_secs,
                prices.join(", ")
            );
            relaxed.decide_within_budget(budget, merge, p, keep_schedule, true)
        }
        None => relaxed.solve_within_budget(budget, merge, exact),
    };
    if o.below_needed {
        println!(
            "no state within {budget} violation s reaches --needed: least KPU-seconds of the states kept {:.1} (not a bound)",
            o.kpu_secs
        );
        if let Some(e) = needed {
            println!("bar ruled out: no policy reaches {e:.4} within {budget} violation s");
        }
        println!("run time {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let bound = o.efficiency_ceiling(clairvoyant);
    println!(
        "least KPU-seconds within {budget} violation s: {:.1} ({:.3} KPU-hours; {} violation s, {} rescales)",
        o.kpu_secs,
        o.kpu_secs / 3600.0,
        o.violation_secs,
        o.rescale_count
    );
    println!("best bound within {budget} violation seconds: efficiency <= {bound:.4}");
    let mut possible = None;
    if (exact || keep_schedule) && o.kpu_secs.is_finite() {
        let plan: Vec<String> = o
            .rescales
            .iter()
            .map(|r| format!("{}:{}", r.at_secs, r.kpu))
            .collect();
        println!("its schedule (second:KPU): {}", plan.join(","));
        let scores = schedule::replay(scenario, &o.rescales)?;
        println!(
            "replayed on the model: {:.1} KPU-seconds, {} violation s, efficiency {:.4}",
            scores.kpu_hours * 3600.0,
            scores.slo_violation_secs,
            scores.efficiency
        );
        possible = Some((scores.slo_violation_secs, scores.efficiency));
    }
    if let Some(e) = needed {
        if bound < e {
            println!("bar ruled out: no policy reaches {e:.4} (bound {bound:.4})");
        } else if let Some((v, eff)) = possible.filter(|&(v, eff)| v <= budget && eff >= e) {
            println!("bar possible: the replayed schedule has {eff:.4} in {v} s");
        } else {
            println!("bar not ruled out: bound {bound:.4} >= needed {e:.4}");
        }
    }
    println!("run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
