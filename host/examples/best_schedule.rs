//! The best fixed schedule of a few rescales on a jump-then-fall
//! scenario (`spike`, `flash-crowd`): how efficient any policy can be there
//! while keeping the SLO violation within a budget.
//!
//! A policy sees a jump in load only when the first datapoint of it is
//! published: a 60 s period ends, plus the 60 s metric delay. The first
//! rescale is therefore put at `--first` (that moment, for an online
//! policy; earlier for one that knew the future) to any KPU, and up to
//! `--rescales` - 1 more rescales (default 2) follow it, each to a lower KPU, at any time on a grid. The
//! search replays every such schedule on the scenario's own model (the one
//! `simulate` and `bench` score), sharing the simulated prefix between
//! schedules that agree up to a rescale, and prints each schedule that
//! beats the best efficiency so far within the violation budget.
//!
//! ```text
//! export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824
//! cargo run --release --example best_schedule -- \
//!     tests/scenarios/flash-crowd.toml --first 1920 --budget 486
//! ```
//!
//! The search clones a simulated world (its per-second history) at every
//! branch; with glibc's default thresholds each clone and drop is an
//! mmap/munmap pair, and the tunables above (keep such blocks on the heap)
//! make it about four times faster.
//!
//! Arguments: the scenario file; `--first SECS`, when the first rescale is
//! sent; `--first-span SECS` (default 0), also try it up to this much
//! later, on the grid; `--budget SECS`, the most SLO violation seconds allowed;
//! `--grid SECS` (default 60), the spacing of the later rescales' times;
//! `--span SECS` (default: the rest of the run), how far after the first
//! rescale the later ones may come. One application per scenario.

use std::path::PathBuf;

use flinkscale::sim::{Scenario, World};

/// What the search explores.
struct Search {
    duration: u64,
    max_lag: f64,
    clairvoyant_kpu_secs: f64,
    budget: u64,
    grid: u64,
    last_time: u64,
    min_kpu: u32,
    update_secs: u64,
    best: f64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("best_schedule: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let (mut first, mut budget, mut grid, mut span) = (None, None, 60u64, None);
    let mut first_span = 0u64;
    let mut rescales = 3u32;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a whole number of seconds"))
        };
        match arg.as_str() {
            "--first" => first = Some(value("--first")?),
            "--budget" => budget = Some(value("--budget")?),
            "--grid" => grid = value("--grid")?.max(1),
            "--span" => span = Some(value("--span")?),
            "--first-span" => first_span = value("--first-span")?,
            "--rescales" => {
                rescales = u32::try_from(value("--rescales")?)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--rescales needs a whole number of at least 1")?;
            }
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let path = path.ok_or("usage: best_schedule SCENARIO --first SECS --budget SECS")?;
    let first = first.ok_or("--first SECS is required")?;
    let budget = budget.ok_or("--budget SECS is required")?;
    let scenario = Scenario::load(&path).map_err(|e| e.to_string())?;
    let [app] = scenario.applications.as_slice() else {
        return Err("the scenario must have exactly one application".into());
    };
    let name = app.name.clone();
    let params = &app.params;
    // The clairvoyant KPU-hours of the whole run, from a run with no rescale.
    let mut idle = World::from_scenario(&scenario, 0);
    idle.advance_to(scenario.duration_secs);
    let clairvoyant_kpu_secs = idle.scores().clairvoyant_kpu_hours * 3600.0;
    let mut search = Search {
        duration: scenario.duration_secs,
        max_lag: params.max_lag_secs,
        clairvoyant_kpu_secs,
        budget,
        grid,
        last_time: span.map_or(scenario.duration_secs, |s| first + first_span + s),
        min_kpu: params.min_kpu,
        update_secs: u64::from(params.update_secs),
        best: 0.0,
    };
    let mut world = World::from_scenario(&scenario, 0);
    let started = std::time::Instant::now();
    let mut schedules = 0u64;
    let mut t1 = first;
    while t1 <= first + first_span {
        world.advance_to(t1);
        // The largest first step first: it is the likeliest to be best, and
        // a good early best prunes the rest of the search sooner.
        for k1 in (params.min_kpu..=params.max_kpu).rev() {
            let mut w = world.clone();
            if !rescale(&mut w, &name, k1) {
                continue;
            }
            let mut plan = vec![(t1, k1)];
            search.follow(&w, &name, &mut plan, rescales - 1, &mut schedules);
        }
        t1 += grid;
    }
    println!(
        "{schedules} schedules in {:.1} s; best efficiency within {budget} violation seconds: {:.3}",
        started.elapsed().as_secs_f64(),
        search.best
    );
    Ok(())
}

impl Search {
    /// Tries `w` as it is (no more rescales) and, with `left` rescales to
    /// go, every later rescale to a lower KPU on the grid.
    fn follow(
        &mut self,
        w: &World,
        name: &str,
        plan: &mut Vec<(u64, u32)>,
        left: u32,
        schedules: &mut u64,
    ) {
        let (at, kpu) = *plan.last().expect("a plan starts with one rescale");
        self.finish(w, plan, schedules);
        if left == 0 || kpu <= self.min_kpu {
            return;
        }
        let mut w = w.clone();
        let mut t = at + self.update_secs + self.grid;
        while t < self.last_time.min(self.duration) {
            w.advance_to(t);
            if !self.may_win(&w, t) {
                return;
            }
            for k in self.min_kpu..kpu {
                let mut next = w.clone();
                if rescale(&mut next, name, k) {
                    plan.push((t, k));
                    self.follow(&next, name, plan, left - 1, schedules);
                    plan.pop();
                }
            }
            t += self.grid;
        }
    }

    /// Whether a run that reached `t` as `w` did can still be within the
    /// budget and beat the best: neither the violation seconds nor the
    /// KPU-seconds ever go down, and every second left costs at least
    /// `min_kpu`.
    fn may_win(&self, w: &World, t: u64) -> bool {
        let Some(h) = w.applications().first().map(|a| a.history()) else {
            return false;
        };
        let violation = h.lag_secs.iter().filter(|&&l| l > self.max_lag).count() as u64;
        let kpu_secs: f64 = h.billed_kpu.iter().map(|&k| f64::from(k)).sum();
        let least = kpu_secs + ((self.duration - t) * u64::from(self.min_kpu)) as f64;
        violation <= self.budget && self.clairvoyant_kpu_secs / least > self.best
    }

    /// Runs `w` to the end with no more rescales and scores it.
    fn finish(&mut self, w: &World, plan: &[(u64, u32)], schedules: &mut u64) {
        *schedules += 1;
        let mut w = w.clone();
        // In steps, giving up as soon as the schedule cannot win; each step
        // twice the last, so the history grows (and is copied) a few times
        // rather than once per step.
        let mut t = w.now_secs();
        let mut step = 300;
        while t < self.duration {
            step *= 2;
            t = (t + step).min(self.duration);
            w.advance_to(t);
            if !self.may_win(&w, t) {
                return;
            }
        }
        let s = w.scores();
        if s.slo_violation_secs <= self.budget && s.efficiency > self.best {
            self.best = s.efficiency;
            println!(
                "efficiency {:.3}  violation {} s  {:.2} KPU-hours  rescales at (s, KPU) {plan:?}",
                s.efficiency, s.slo_violation_secs, s.kpu_hours
            );
        }
    }
}

/// Sends UpdateApplication to `kpu` (one subtask per KPU); false if refused.
fn rescale(w: &mut World, name: &str, kpu: u32) -> bool {
    let Ok(view) = w.describe(name) else {
        return false;
    };
    view.parallelism != kpu
        && w.update_application(name, view.version_id, Some(kpu), Some(1), None)
            .is_ok()
}
