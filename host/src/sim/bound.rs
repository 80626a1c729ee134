//! An upper bound on the efficiency any KPU-deciding policy, even a
//! clairvoyant one, can reach on a one-application scenario within a budget
//! of SLO-violation seconds: an exact dynamic programme over a relaxed model
//! (`bar_bound` in `host/examples/` is its command line).
//!
//! The relaxed model only ever helps the policy, so the least cost it finds
//! is at most the least cost of any real schedule. Each relaxation, and why
//! it can only lower KPU-seconds or violation seconds:
//!
//! - **The policy knows the future.** The programme minimises over every
//!   schedule with the whole input trace in hand; real policies are a subset.
//! - **KPU levels.** A policy may ask for any KPU from 1 to the account
//!   limit (the agent keeps ParallelismPerKPU, so capacity is that of KPU x
//!   ParallelismPerKPU subtasks). A KPU whose capacity is no higher than a
//!   smaller KPU's is replaced by the largest smaller "level" (a KPU with
//!   more capacity than every smaller one): at least as much capacity, no
//!   more KPU. Capacity is monotone help: more capacity never raises the
//!   backlog (`B' = max(0, B + lambda - c)` falls as `c` rises).
//! - **Restarts in blocks.** Time is cut into blocks of `block_secs`. A real
//!   UpdateApplication sent at second `s` in block `j` keeps the application
//!   down for `[s, s + update_secs)`, which contains the whole blocks
//!   `j + 1 ..= j + m`, `m = floor(update_secs / block_secs) - 1`. The
//!   relaxed update runs block `j` on the old KPU (real: old, then down),
//!   is down for exactly those `m` blocks, billed the larger of old and new
//!   KPU (as the model bills), and runs the new KPU from block `j + m + 1`
//!   on (real: still down, billed the larger, until `s + update_secs`). So
//!   every second the relaxed model processes at least as much and bills no
//!   more. The next real update comes at `s' >= s + update_secs`, in block
//!   `j + m + 1` or later, where the relaxed model may rescale again: every
//!   real schedule maps to a relaxed one.
//! - **Backlog rounded down.** At each block boundary the backlog is rounded
//!   down to a grid of `buckets` steps up to `cap_secs` x the peak input
//!   rate (and anything above the cap down to it). Within a block the
//!   backlog follows the model's per-second equation exactly (Lindley's
//!   recursion). Backlog, violations and every later backlog are
//!   non-decreasing in the starting backlog, so by induction the relaxed
//!   backlog stays at or below the real one along the same decisions.
//! - **Violations from the backlog.** The model's lag at the end of step `t`
//!   is the FIFO age of the oldest unprocessed record, so lag > max_lag
//!   exactly when the backlog exceeds the arrivals of the last max_lag
//!   seconds, `A(t + 1) - A(t + 1 - max_lag)` (the arrivals are piecewise
//!   linear, as in the model). The relaxed model counts a violation only
//!   when the backlog exceeds that by a margin of 1e-9 relative and 1e-6
//!   records (floating-point slack), which can only miss violations.
//!
//! The budget is handled by a Lagrangian price: the programme minimises
//! `KPU-seconds + price x violation-seconds`, `L(price)`. Every real schedule
//! with at most `budget` violation seconds has KPU-seconds at least
//! `L(price) - price x budget`, so its efficiency (clairvoyant KPU-seconds
//! over its KPU-seconds) is at most `clairvoyant / (L(price) - price x
//! budget)`, for every price. The best bound is the least over prices;
//! [`PriceSearch`] looks for it, and also gives a floor that no price can
//! take the bound below at the same resolution.
//!
//! Two variants share the programme. [`Relaxed::solve_per_second`] drops
//! the blocks and the grid: restarts at any second, exactly as long as the
//! model's, and exact backlogs, with near states merged in the policy's
//! favour; where its states stay few it is the tighter bound.
//! [`Relaxed::plan`] goes the other way, for finding schedules rather than
//! bounding them: restarts touch whole blocks and the backlog is rounded
//! up, so the schedule it returns runs on the real model with no more
//! violation seconds than it planned.
//!
//! A price bounds only through the lower convex hull of the schedules'
//! (violation seconds, KPU-seconds): when the best schedules straddle the
//! budget, no price gives a bound below where their lines cross (the
//! duality gap). [`Relaxed::solve_within_budget`] closes it by putting the
//! budget into the per-second programme's state. Each state carries its
//! exact backlog, its violation seconds so far and its KPU-seconds so far;
//! a state over the budget is dropped (violations never fall), and a state
//! is dropped only when another of its level and second is at most it on
//! all three (less backlog never leads to more backlog, hence more
//! violations, along the same decisions, and costs the same). Merging, if
//! asked for, joins states of equal violations with near backlogs into
//! their least backlog and least KPU-seconds, a state at least as good as
//! each. The relaxations are those of the per-second programme plus these
//! merges, each in the policy's favour, so its least KPU-seconds is at most
//! that of every real schedule within the budget, and clairvoyant over it
//! bounds their efficiency with no price at all.
//!
//! [`Relaxed::decide_within_budget`] asks only whether some schedule within
//! the budget reaches a needed efficiency, and drops along the way every
//! state that cannot lead to one: its KPU-seconds so far plus a lower
//! bound on those still to come (the block programme's priced cost-to-go
//! from that second, less the price of the violation seconds the budget
//! has left) already above clairvoyant / needed. Fewer states, so finer
//! merges fit in time and memory.

use super::World;
use super::scenario::{AppParams, Scenario};
use super::schedule::Rescale;

/// The input of the programme: one application's input rate per second and
/// its parameters, as the scenario's own model produces them.
#[derive(Debug, Clone)]
pub struct Relaxed {
    /// Input rate of each step, records/s (the model's, which no policy
    /// changes).
    pub lambda: Vec<f64>,
    /// The application's parameters.
    pub params: AppParams,
    /// The clairvoyant KPU-seconds of the run (the numerator of efficiency).
    pub clairvoyant_kpu_secs: f64,
}

/// The resolution of the relaxed model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution {
    /// Seconds per block: a relaxed rescale starts at a block boundary.
    pub block_secs: u64,
    /// Backlog grid steps.
    pub buckets: usize,
    /// The backlog grid's top, in seconds of the peak input rate.
    pub cap_secs: f64,
}

impl Default for Resolution {
    fn default() -> Self {
        Self {
            block_secs: 10,
            buckets: 1000,
            cap_secs: 600.0,
        }
    }
}

/// The least priced cost of the relaxed model at one price, and the
/// schedule that reaches it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricedOptimum {
    /// The price of one violation second, in KPU-seconds.
    pub price: f64,
    /// L(price): least KPU-seconds + price x violation seconds.
    pub priced_cost: f64,
    /// KPU-seconds of the schedule reaching it.
    pub kpu_secs: f64,
    /// Violation seconds (relaxed count) of that schedule.
    pub violation_secs: u64,
    /// Rescales of that schedule.
    pub rescales: u64,
}

impl PricedOptimum {
    /// The efficiency no schedule with at most `budget` violation seconds
    /// can beat: clairvoyant / (L - price x budget); infinite when the
    /// denominator is not positive (the price is too high to say anything).
    pub fn efficiency_ceiling(&self, clairvoyant_kpu_secs: f64, budget: u64) -> f64 {
        let least_kpu_secs = self.priced_cost - self.price * budget as f64;
        if least_kpu_secs > 0.0 {
            clairvoyant_kpu_secs / least_kpu_secs
        } else {
            f64::INFINITY
        }
    }
}

impl Relaxed {
    /// Runs the scenario's model with no rescale to read its input rates and
    /// clairvoyant KPU-seconds; the scenario must have one application.
    pub fn from_scenario(scenario: &Scenario) -> Result<Self, String> {
        let [app] = scenario.applications.as_slice() else {
            return Err(format!(
                "scenario {}: the bound needs exactly one application, it has {}",
                scenario.name,
                scenario.applications.len()
            ));
        };
        let mut world = World::from_scenario(scenario, 0);
        world.advance_to(scenario.duration_secs);
        let clairvoyant_kpu_secs = world.scores().clairvoyant_kpu_hours * 3600.0;
        let lambda = world
            .history(&app.name)
            .map_err(|e| e.to_string())?
            .lambda
            .clone();
        Ok(Self {
            lambda,
            params: app.params.clone(),
            clairvoyant_kpu_secs,
        })
    }

    /// The KPU levels: each KPU from 1 to the KPU quota whose capacity
    /// beats every smaller KPU's, with that capacity.
    pub fn levels(&self) -> Vec<(u32, f64)> {
        let ppk = self.params.parallelism_per_kpu.max(1);
        let mut levels: Vec<(u32, f64)> = Vec::new();
        for k in 1..=self.params.account_kpu_limit.max(1) {
            let p = k.saturating_mul(ppk);
            if p > super::model::MAX_PARALLELISM_API {
                break;
            }
            let c = self.params.capacity(p);
            if levels.last().is_none_or(|&(_, last)| c > last) {
                levels.push((k, c));
            }
        }
        levels
    }

    /// Solves the relaxed model at one price.
    pub fn solve(&self, resolution: Resolution, price: f64) -> PricedOptimum {
        Solver::new(self, resolution).run(price)
    }

    /// Searches the price for the least ceiling within `budget` violation
    /// seconds (see [`PriceSearch`] for how, and when it stops).
    pub fn least_ceiling(
        &self,
        resolution: Resolution,
        budget: u64,
        search: &PriceSearch,
    ) -> SearchOutcome {
        let solver = Solver::new(self, resolution);
        search.run(self.clairvoyant_kpu_secs, budget, |price| solver.run(price))
    }

    /// Solves the per-second programme at one price: a relaxation tighter
    /// than the blocks' where its states stay few. A restart may start at
    /// any second and lasts exactly `update_secs`, billed as the model
    /// bills it; each state keeps its exact backlog (the model's
    /// per-second equation) and violations (backlog above the arrivals of
    /// the last `max_lag_secs`, with the same slack as the blocks). The
    /// states of one level at one second are kept only where none has both
    /// less backlog and less cost (more backlog never lowers the cost to
    /// come), and those within `merge_secs` x the peak input rate of
    /// backlog of each other are merged into one with the least backlog
    /// and the least cost: the only relaxation besides knowing the future,
    /// and it only lowers the optimum. An update whose restart would
    /// outlast the run is left out: staying is billed no more and
    /// processes more. So every real schedule's priced cost is at least
    /// the optimum, and [`PricedOptimum::efficiency_ceiling`] is a bound.
    ///
    /// The optimum's KPU-seconds and violation seconds are those of the
    /// merged state reaching it; after a merge they need not be a schedule
    /// the model can run, so a [`PriceSearch`]'s floor over these solves
    /// is a guide to the next price, not a proof (its ceilings are).
    pub fn solve_per_second(&self, price: f64, merge_secs: f64) -> PricedOptimum {
        Solver::new(self, Resolution::default())
            .run_per_second(price, merge_secs, None, false, None, false)
            .0
    }

    /// [`Relaxed::solve_per_second`] with the schedule reaching its optimum
    /// (of the cheapest state of each merge). Without merging
    /// (`merge_secs` 0) it is a real schedule of least priced cost among
    /// those of KPU levels; with merging, one whose replay may cost a
    /// little more than planned. For finding schedules: the replay decides.
    pub fn plan_per_second(&self, price: f64, merge_secs: f64) -> Plan {
        let (o, rescales, _) = Solver::new(self, Resolution::default())
            .run_per_second(price, merge_secs, None, true, None, false);
        Plan {
            price,
            priced_cost: o.priced_cost,
            kpu_secs: o.kpu_secs,
            violation_secs: o.violation_secs,
            rescales,
        }
    }

    /// The per-second programme with the budget in its state: the least
    /// KPU-seconds of any schedule of KPU levels with at most `budget`
    /// violation seconds, where the priced bounds only bound it from
    /// below through a price (between two schedules that straddle the
    /// budget no price can close their duality gap).
    ///
    /// Each state of a level at one second carries its exact backlog, its
    /// violation seconds so far (the same count and slack as
    /// [`Relaxed::solve_per_second`]) and its KPU-seconds so far. A state
    /// over the budget is dropped: every later second only adds
    /// violations. A state is dropped when another of its level and second
    /// has at most its backlog, at most its violations and at most its
    /// KPU-seconds: from less backlog the same decisions never make more
    /// backlog later (Lindley's recursion is monotone), so no more
    /// violations, at the same KPU-seconds. States of equal violations
    /// whose backlogs lie within `merge_secs` x the peak input rate of each
    /// other are merged into one with the least backlog and the least
    /// KPU-seconds: at least as good as each on all three, so the least
    /// KPU-seconds can only fall. Restarts are those of the per-second
    /// programme. So every real schedule within the budget uses at least
    /// the optimum's KPU-seconds, and [`BudgetOptimum::efficiency_ceiling`]
    /// is a bound on its efficiency, with no price and no gap.
    ///
    /// With `schedule`, the rescales reaching the optimum are kept too.
    /// Without merging (`merge_secs` 0) they are a real schedule that the
    /// model runs to the optimum's KPU-seconds and violation seconds; after
    /// a merge, the optimum's state need not be a schedule the model can
    /// run and the replay decides.
    pub fn solve_within_budget(
        &self,
        budget: u64,
        merge_secs: f64,
        schedule: bool,
    ) -> BudgetOptimum {
        self.within_budget(budget, merge_secs, None, schedule, false)
    }

    /// [`Relaxed::solve_within_budget`] for the yes/no question "can any
    /// schedule within `budget` violation seconds reach efficiency
    /// `prune.needed`", with states that cannot lead to such a schedule
    /// dropped along the way (fewer states, so finer merges fit).
    ///
    /// Every `prune.every_secs` seconds, a running state of level `k` with
    /// backlog `B`, `v` violation seconds and `K` KPU-seconds so far is
    /// dropped when `K + max(0, max_p (V_p - p x (budget - v)))` exceeds
    /// clairvoyant / needed (by more than a relative 1e-9 of rounding
    /// slack), where `V_p` is the block programme's priced cost-to-go at
    /// price `p` (one of `prune.prices`, at `prune.resolution`) from that
    /// second, level `k` and the least over the grid buckets at or above
    /// `B`'s (rounded down). Why that is sound: the module's argument for
    /// the block programme holds from any block boundary, not only the
    /// run's start, so `V_p` at the bucket of a backlog `B' >= B` is at most
    /// the KPU-seconds `R` plus `p` x the violation seconds `W` that any
    /// real schedule running level `k` from that second with backlog `B'`
    /// has still to come; the bucket rises with the backlog, so the least
    /// over the buckets at or above `B`'s is too. Every real schedule
    /// within the budget and reaching `needed` is, at that second, in a
    /// state dominated by a kept one (backlog `B' >= B`, violations
    /// `v' >= v`, KPU-seconds `K' >= K`; merges and drops keep a
    /// dominating state), has `W <= budget - v' <= budget - v`, so
    /// `R >= V_p - p x (budget - v)` and `R >= 0`, and its total
    /// `K' + R <= clairvoyant / needed`: the dominating state is kept.
    ///
    /// So the least KPU-seconds returned is at most that of every real
    /// schedule within the budget that reaches `needed`. When it is at most
    /// clairvoyant / needed, clairvoyant over it is a bound as in
    /// [`Relaxed::solve_within_budget`] (a schedule not reaching `needed`
    /// is below it anyway); when it is above (or no state survives),
    /// [`BudgetOptimum::below_needed`] is set: no schedule within the
    /// budget reaches `needed`, and the KPU-seconds are only the least of
    /// the states kept, not a bound. With `schedule`, the rescales
    /// reaching the least state too (as in
    /// [`Relaxed::solve_within_budget`]: after a merge, a start for a
    /// search on the real model, not a schedule the model runs to that
    /// cost). With `progress`, a line on stderr every simulated hour:
    /// states kept and pruned, and their memory.
    pub fn decide_within_budget(
        &self,
        budget: u64,
        merge_secs: f64,
        prune: &NeededPrune,
        schedule: bool,
        progress: bool,
    ) -> BudgetOptimum {
        self.within_budget(budget, merge_secs, Some(prune), schedule, progress)
    }

    /// The per-second programme within `budget` that both
    /// [`Relaxed::solve_within_budget`] (no `prune`) and
    /// [`Relaxed::decide_within_budget`] run.
    fn within_budget(
        &self,
        budget: u64,
        merge_secs: f64,
        prune: Option<&NeededPrune>,
        schedule: bool,
        progress: bool,
    ) -> BudgetOptimum {
        // No run violates more seconds than it lasts.
        let cap = budget.min(self.lambda.len() as u64);
        let budget_u32 = u32::try_from(cap).unwrap_or(u32::MAX);
        let limit = prune.map(|p| self.clairvoyant_kpu_secs / p.needed * (1.0 + 1e-9));
        let cost_to_go = prune
            .zip(limit)
            .map(|(p, limit)| CostToGo::new(self, p, budget_u32, limit));
        let (o, rescales, pruned) = Solver::new(self, Resolution::default()).run_per_second(
            0.0,
            merge_secs,
            Some(budget_u32),
            schedule,
            cost_to_go.as_ref(),
            progress,
        );
        BudgetOptimum {
            budget,
            kpu_secs: o.priced_cost,
            violation_secs: o.violation_secs,
            rescale_count: o.rescales,
            rescales,
            // Not within the limit (a NaN never is); no limit without a
            // prune.
            below_needed: limit
                .is_some_and(|limit| o.priced_cost.partial_cmp(&limit).is_none_or(|o| o.is_gt())),
            pruned,
        }
    }

    /// [`Relaxed::least_ceiling`] with the per-second programme (see
    /// [`Relaxed::solve_per_second`]).
    pub fn least_ceiling_per_second(
        &self,
        merge_secs: f64,
        budget: u64,
        search: &PriceSearch,
    ) -> SearchOutcome {
        search.run(self.clairvoyant_kpu_secs, budget, |price| {
            self.solve_per_second(price, merge_secs)
        })
    }
}

/// The least KPU-seconds within a violation budget (see
/// [`Relaxed::solve_within_budget`]), and the schedule reaching it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetOptimum {
    /// The most violation seconds allowed.
    pub budget: u64,
    /// The least KPU-seconds of the relaxed model within the budget
    /// (infinite when no state stays within it).
    pub kpu_secs: f64,
    /// Violation seconds (relaxed count) of the state reaching it.
    pub violation_secs: u64,
    /// Rescales on the way to that state.
    pub rescale_count: u64,
    /// The rescales, in time order, when asked for (empty otherwise).
    pub rescales: Vec<Rescale>,
    /// Set by [`Relaxed::decide_within_budget`] when no state within the
    /// budget reaches its `needed` efficiency: no schedule within the
    /// budget does, and `kpu_secs` is not a bound (only the least of the
    /// states the prune kept). Never set by [`Relaxed::solve_within_budget`].
    pub below_needed: bool,
    /// States dropped by the prune of [`Relaxed::decide_within_budget`]
    /// (0 for [`Relaxed::solve_within_budget`]).
    pub pruned: u64,
}

/// The sound prune of [`Relaxed::decide_within_budget`]: the efficiency
/// asked for, and the block programme whose priced cost-to-go bounds from
/// below the KPU-seconds every state has still to spend.
#[derive(Debug, Clone, PartialEq)]
pub struct NeededPrune {
    /// The efficiency asked for (clairvoyant / KPU-seconds).
    pub needed: f64,
    /// The block programme's resolution: any gives a valid lower bound; a
    /// finer one a higher one, in more time and memory.
    pub resolution: Resolution,
    /// The prices the block programme is solved at; each gives a valid
    /// lower bound and the highest is used (the Lagrangian search's prices
    /// near the budget are the useful ones).
    pub prices: Vec<f64>,
    /// Seconds between two prunes, rounded up to a multiple of the
    /// resolution's block. The cost-to-go is kept for each such second:
    /// levels x (buckets + 1) numbers per price.
    pub every_secs: u64,
}

impl BudgetOptimum {
    /// The efficiency no schedule within the budget can beat:
    /// clairvoyant / the least KPU-seconds (infinite when that is not
    /// positive).
    pub fn efficiency_ceiling(&self, clairvoyant_kpu_secs: f64) -> f64 {
        if self.kpu_secs > 0.0 {
            clairvoyant_kpu_secs / self.kpu_secs
        } else {
            f64::INFINITY
        }
    }
}

/// A schedule the planning variant of the programme chose at one price
/// (see [`Relaxed::plan`]), with its relaxed cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The price of one violation second, in KPU-seconds.
    pub price: f64,
    /// KPU-seconds + price x violation seconds along the schedule, as the
    /// planning model counts them: its least priced cost.
    pub priced_cost: f64,
    /// KPU-seconds of the schedule in the planning model (what the real
    /// model bills for it, to the second).
    pub kpu_secs: f64,
    /// Violation seconds of the schedule in the planning model.
    pub violation_secs: u64,
    /// The rescales, in time order.
    pub rescales: Vec<Rescale>,
}

/// The most bytes of decisions [`Relaxed::plan`] keeps (one per block,
/// KPU level and backlog bucket).
pub const PLAN_MAX_DECISION_BYTES: usize = 1 << 30;

impl Relaxed {
    /// The schedule of least KPU-seconds + `price` x violation seconds in a
    /// planning variant of the programme, which a real schedule can follow
    /// to the second: every update is sent at a block's end (a whole
    /// number of seconds), is down for every block its restart touches
    /// (`ceil(update_secs / block_secs)` blocks; exactly the real restart
    /// when the block divides `update_secs`), billed the larger of old and
    /// new KPU as the model bills it, and the backlog is rounded UP at each
    /// block boundary. So the real model, following the schedule, bills
    /// exactly its KPU-seconds when the block divides `update_secs` and
    /// never has a larger backlog, hence no more violation seconds (a
    /// schedule whose planned backlog would pass the grid's cap is not
    /// taken). Not a bound: the search for a good real schedule
    /// starts here, and the real replay ([`super::schedule::replay`])
    /// decides.
    ///
    /// Keeps one byte per (block, KPU level, bucket); refuses a resolution
    /// needing more than [`PLAN_MAX_DECISION_BYTES`].
    pub fn plan(&self, resolution: Resolution, price: f64) -> Result<Plan, String> {
        let solver = Solver::planning(self, resolution);
        let states = solver.levels.len() * (solver.buckets + 1);
        let bytes = solver.blocks().saturating_mul(states);
        if bytes > PLAN_MAX_DECISION_BYTES {
            return Err(format!(
                "planning at {} s blocks and {} buckets needs {} MiB of decisions ({} blocks x {} KPU levels x {} buckets), more than the {} MiB allowed: use longer blocks or fewer buckets",
                solver.block,
                solver.buckets,
                bytes >> 20,
                solver.blocks(),
                solver.levels.len(),
                solver.buckets + 1,
                PLAN_MAX_DECISION_BYTES >> 20
            ));
        }
        if solver.levels.len() >= usize::from(u8::MAX) {
            return Err(format!(
                "planning keeps a KPU level in a byte: {} levels are too many",
                solver.levels.len()
            ));
        }
        let mut decisions = vec![0u8; bytes];
        solver.run_recording(price, Some(&mut decisions), None);
        Ok(solver.follow(price, &decisions))
    }

    /// The optimum of the planning variant at `price` without its schedule
    /// (what [`Relaxed::plan`] follows); for tests.
    pub fn plan_optimum(&self, resolution: Resolution, price: f64) -> PricedOptimum {
        Solver::planning(self, resolution).run(price)
    }
}

/// How [`Relaxed::least_ceiling`] searches the price.
///
/// With `g(p) = L(p) - p x budget` the ceiling is `clairvoyant / g(p)`, so
/// the least ceiling is at the greatest `g`. Each solve at a price `p_i`
/// returns a relaxed schedule with KPU-seconds `K_i` and violation seconds
/// `V_i`, and for every price `p`, `L(p) <= K_i + p x V_i`, so
/// `g(p) <= K_i + p x (V_i - budget)`: a line above `g` everywhere (`g` is
/// concave, a minimum of such lines, and the line touches it at `p_i`).
/// A schedule over the budget (`V_i > budget`) says the greatest `g` is at a
/// higher price, one under it at a lower price, one exactly on it that
/// `p_i` is the greatest. The search:
///
/// 1. starts at `start`, and multiplies (over the budget) or divides (under
///    it) the price by 8 until it has one price on each side; below
///    `1/64` it tries price 0, where `g` is greatest if still under;
/// 2. then solves where the lines of the highest price over and the lowest
///    price under the budget cross (Kelley's cutting planes in one
///    dimension; for a piecewise linear `g` this ends in finitely many
///    steps).
///
/// The least of those two lines, at their crossing, is at or above every
/// `g(p)`, so `clairvoyant` over it is a floor no price can take the
/// ceiling below (at this resolution). The search stops when the ceiling
/// is within `tolerance` (relative) of that floor, after `max_solves`
/// solves, or, with `needed`, as soon as the verdict is known: the ceiling
/// is below `needed` (ruled out) or the floor is at or above it (no price
/// can rule it out at this resolution). Whenever it stops, the ceiling is
/// a valid bound: every price gives one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceSearch {
    /// The first price tried.
    pub start: f64,
    /// The most solves.
    pub max_solves: usize,
    /// Stop when ceiling <= floor x (1 + tolerance).
    pub tolerance: f64,
    /// The efficiency the bar needs, to stop once the verdict is known.
    pub needed: Option<f64>,
}

impl Default for PriceSearch {
    fn default() -> Self {
        Self {
            start: 64.0,
            max_solves: 12,
            tolerance: 1e-3,
            needed: None,
        }
    }
}

/// Why a [`PriceSearch`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchStop {
    /// The ceiling is within the tolerance of the floor.
    Converged,
    /// The ceiling is below the efficiency needed.
    RuledOut,
    /// The floor is at or above the efficiency needed.
    CannotRuleOut,
    /// `max_solves` were used.
    SolvesUsed,
}

/// The result of a [`PriceSearch`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    /// Every solve, in the order made.
    pub optima: Vec<PricedOptimum>,
    /// The least ceiling over the prices solved (a valid bound).
    pub ceiling: f64,
    /// The price giving it.
    pub price: f64,
    /// No price gives a ceiling below this (0 when nothing is known yet).
    pub floor: f64,
    /// Why the search stopped.
    pub stop: SearchStop,
}

/// One solve seen as a line above `g`: `g(p) <= intercept + p x slope`.
#[derive(Debug, Clone, Copy)]
struct Cut {
    price: f64,
    intercept: f64,
    slope: f64,
}

impl PriceSearch {
    /// Runs the search with `solve` giving the relaxed optimum at a price.
    pub fn run(
        &self,
        clairvoyant_kpu_secs: f64,
        budget: u64,
        mut solve: impl FnMut(f64) -> PricedOptimum,
    ) -> SearchOutcome {
        let budget_f = budget as f64;
        let ceiling_of = |g: f64| {
            if g > 0.0 {
                clairvoyant_kpu_secs / g
            } else {
                f64::INFINITY
            }
        };
        let mut optima = Vec::new();
        let (mut over, mut under): (Option<Cut>, Option<Cut>) = (None, None);
        let (mut best_g, mut best_price) = (f64::NEG_INFINITY, self.start);
        let mut price = self.start.max(0.0);
        let mut stop = SearchStop::SolvesUsed;
        let mut floor = 0.0;
        for _ in 0..self.max_solves.max(1) {
            let o = solve(price);
            optima.push(o);
            let g = o.priced_cost - price * budget_f;
            if g > best_g {
                (best_g, best_price) = (g, price);
            }
            let violations = o.violation_secs as f64;
            let cut = Cut {
                price,
                intercept: o.priced_cost - price * violations,
                slope: violations - budget_f,
            };
            // The greatest g is at most `top` (None: unbounded so far).
            let top = if cut.slope == 0.0 {
                Some(g)
            } else {
                if cut.slope > 0.0 {
                    over = Some(cut);
                } else {
                    under = Some(cut);
                }
                match (over, under) {
                    (Some(a), Some(b)) => {
                        let cross = (b.intercept - a.intercept) / (a.slope - b.slope);
                        Some(a.intercept + a.slope * cross.max(0.0))
                    }
                    (None, Some(b)) => Some(b.intercept),
                    _ => None,
                }
            };
            floor = match top {
                Some(t) if t > 0.0 => clairvoyant_kpu_secs / t,
                Some(_) => f64::INFINITY,
                None => 0.0,
            };
            let ceiling = ceiling_of(best_g);
            if let Some(needed) = self.needed {
                if ceiling < needed {
                    stop = SearchStop::RuledOut;
                    break;
                }
                if floor >= needed {
                    stop = SearchStop::CannotRuleOut;
                    break;
                }
            }
            if cut.slope == 0.0 || ceiling <= floor * (1.0 + self.tolerance) {
                stop = SearchStop::Converged;
                break;
            }
            price = match (over, under) {
                (Some(a), Some(b)) => {
                    let cross = (b.intercept - a.intercept) / (a.slope - b.slope);
                    if cross > a.price && cross < b.price {
                        cross
                    } else {
                        // Rounding put the crossing outside: halve the bracket.
                        0.5 * (a.price + b.price)
                    }
                }
                (Some(a), None) => a.price * 8.0,
                (None, Some(b)) if b.price < 1.0 / 64.0 => 0.0,
                (None, Some(b)) => b.price / 8.0,
                (None, None) => price,
            };
        }
        SearchOutcome {
            optima,
            ceiling: ceiling_of(best_g),
            price: best_price,
            floor,
            stop,
        }
    }
}

/// Receives each block's index and priced cost-to-go (per level, per
/// bucket) from the block programme as soon as it is solved.
type LayerSink<'a> = &'a mut dyn FnMut(usize, &[f64]);

/// Per-layer values: for each (level, bucket) the priced cost-to-go and the
/// statistics of the schedule reaching it.
#[derive(Debug, Clone, Default)]
struct Layer {
    cost: Vec<f64>,
    kpu_secs: Vec<f64>,
    violations: Vec<u32>,
    rescales: Vec<u32>,
}

impl Layer {
    fn new(n: usize) -> Self {
        Self {
            cost: vec![0.0; n],
            kpu_secs: vec![0.0; n],
            violations: vec![0; n],
            rescales: vec![0; n],
        }
    }
}

/// The prepared programme.
struct Solver {
    levels: Vec<(u32, f64)>,
    lambda: Vec<f64>,
    /// Cumulative arrivals at each whole second.
    arrived: Vec<f64>,
    /// Per step, the backlog above which the step surely violates.
    threshold: Vec<f64>,
    block: usize,
    downtime_blocks: usize,
    buckets: usize,
    step: f64,
    /// The peak input rate, records/s (at least 1).
    peak: f64,
    initial_level: usize,
    /// Round the backlog up at block boundaries (planning) instead of down
    /// (the bound).
    round_up: bool,
    /// The restart's length, seconds.
    update_secs: usize,
}

/// One block run on one level from a backlog `B0` on the grid: the backlog
/// of each step is `max(B0 + p_s, m_s)`, so the block's end backlog is
/// `max(B0 + p, m)` and its violations are `base` plus the thresholds below
/// `B0` (`thresholds` sorted).
struct BlockRun {
    p: f64,
    m: f64,
    base: u32,
}

impl Solver {
    fn new(relaxed: &Relaxed, resolution: Resolution) -> Self {
        let params = &relaxed.params;
        let lambda = relaxed.lambda.clone();
        let mut arrived = Vec::with_capacity(lambda.len() + 1);
        arrived.push(0.0);
        for &l in &lambda {
            arrived.push(arrived.last().copied().unwrap_or(0.0) + l);
        }
        let at = |x: f64| -> f64 {
            if x <= 0.0 {
                return 0.0;
            }
            let i = x.floor() as usize;
            if i >= lambda.len() {
                return arrived[lambda.len()];
            }
            arrived[i] + (x - i as f64) * lambda[i]
        };
        let max_lag = params.max_lag_secs;
        let threshold = (0..lambda.len())
            .map(|t| {
                let end = (t + 1) as f64;
                let window = arrived[t + 1] - at(end - max_lag);
                window * (1.0 + 1e-9) + 1e-6
            })
            .collect();
        let levels = relaxed.levels();
        let initial = params.initial_kpu;
        let initial_level = levels.iter().rposition(|&(k, _)| k <= initial).unwrap_or(0);
        let block = resolution.block_secs.max(1) as usize;
        let downtime_blocks = (params.update_secs as usize / block).saturating_sub(1);
        let peak = lambda.iter().copied().fold(0.0, f64::max).max(1.0);
        let buckets = resolution.buckets.max(1);
        let step = resolution.cap_secs.max(1.0) * peak / buckets as f64;
        Self {
            levels,
            lambda,
            arrived,
            threshold,
            block,
            downtime_blocks,
            buckets,
            step,
            peak,
            initial_level,
            round_up: false,
            update_secs: params.update_secs as usize,
        }
    }

    /// The planning variant (see [`Relaxed::plan`]): a restart is down for
    /// every block it touches and the backlog is rounded up.
    fn planning(relaxed: &Relaxed, resolution: Resolution) -> Self {
        let mut solver = Self::new(relaxed, resolution);
        solver.downtime_blocks = (relaxed.params.update_secs as usize).div_ceil(solver.block);
        solver.round_up = true;
        solver
    }

    /// The grid index at or below `backlog` (at or above it when planning).
    fn bucket(&self, backlog: f64) -> usize {
        if self.round_up {
            return if backlog <= 0.0 {
                0
            } else {
                ((backlog / self.step).ceil() as usize).min(self.buckets)
            };
        }
        let b = backlog * (1.0 - 1e-12) - 1e-9;
        if b <= 0.0 {
            0
        } else {
            ((b / self.step).floor() as usize).min(self.buckets)
        }
    }

    /// Whether a backlog stays on the grid: always for the bound (above
    /// the cap it is rounded down to it); when planning, a schedule whose
    /// backlog would pass the cap is not taken, so rounding stays upward.
    fn fits(&self, backlog: f64) -> bool {
        !self.round_up || backlog <= self.buckets as f64 * self.step
    }

    /// The steps of block `j`.
    fn block_span(&self, j: usize) -> (usize, usize) {
        let start = j * self.block;
        (start, (start + self.block).min(self.lambda.len()))
    }

    /// Block `j` run at `capacity`; `thresholds` gets the sorted thresholds
    /// on `B0` above which a step not already violating violates.
    fn block_run(&self, j: usize, capacity: f64, thresholds: &mut Vec<f64>) -> BlockRun {
        let (start, end) = self.block_span(j);
        let (mut p, mut m) = (0.0f64, 0.0f64);
        let mut base = 0u32;
        thresholds.clear();
        for s in start..end {
            let x = self.lambda[s] - capacity;
            p += x;
            m = (m + x).max(0.0);
            if m > self.threshold[s] {
                base += 1;
            } else {
                thresholds.push(self.threshold[s] - p);
            }
        }
        thresholds.sort_by(f64::total_cmp);
        BlockRun { p, m, base }
    }

    /// The downtime of an update sent at the end of block `j`: its steps,
    /// its arrivals, and in `thresholds` the sorted backlogs at its start
    /// above which each of its steps violates.
    fn block_down(&self, j: usize, thresholds: &mut Vec<f64>) -> (usize, f64) {
        let (_, end) = self.block_span(j);
        let down_end = (end + self.downtime_blocks * self.block).min(self.lambda.len());
        (down_end - end, self.down(end, down_end, thresholds))
    }

    /// The application down over steps `[from, to)`: in `thresholds` the
    /// sorted backlogs at `from` above which each step violates (nothing
    /// is processed, so step `t`'s backlog is the one at `from` plus what
    /// arrived since), and the arrivals over the span.
    fn down(&self, from: usize, to: usize, thresholds: &mut Vec<f64>) -> f64 {
        thresholds.clear();
        for t in from..to {
            thresholds.push(self.threshold[t] - (self.arrived[t + 1] - self.arrived[from]));
        }
        thresholds.sort_by(f64::total_cmp);
        self.arrived[to] - self.arrived[from]
    }

    fn blocks(&self) -> usize {
        self.lambda.len().div_ceil(self.block)
    }

    fn run(&self, price: f64) -> PricedOptimum {
        self.run_recording(price, None, None)
    }

    /// Solves at `price`; with `decisions` (blocks x levels x (buckets + 1)
    /// entries), records in each state's entry 0 to run on, or the target
    /// level + 1 of the update sent at the block's end; with `layers`,
    /// hands it each block's index and priced cost-to-go (per level, per
    /// bucket) as soon as it is solved.
    fn run_recording(
        &self,
        price: f64,
        mut decisions: Option<&mut [u8]>,
        mut layer_sink: Option<LayerSink<'_>>,
    ) -> PricedOptimum {
        let duration = self.lambda.len();
        let nb = self.buckets + 1;
        let nk = self.levels.len();
        let blocks = self.blocks();
        let ring = self.downtime_blocks + 2;
        let mut layers: Vec<Layer> = (0..ring).map(|_| Layer::new(nk * nb)).collect();
        // Minima over the target level of an update, per bucket of the layer
        // it lands in: k' <= k (billed k during downtime) and k' > k (billed k').
        let mut low = vec![(0.0f64, 0usize); nk * nb];
        let mut high = vec![(f64::INFINITY, 0usize); nk * nb];
        let mut run_thresholds: Vec<f64> = Vec::with_capacity(self.block);
        let mut down_thresholds: Vec<f64> = Vec::new();
        for j in (0..blocks).rev() {
            let (start, end) = self.block_span(j);
            let n = end - start;
            let next = (j + 1) % ring;
            let landing_block = (j + 1 + self.downtime_blocks).min(blocks);
            let landing = landing_block % ring;
            let can_update = end < duration;
            // Downtime: violation at t iff B1 + (A(t+1) - A(end)) > threshold.
            let (d, down_arrivals) = self.block_down(j, &mut down_thresholds);
            if can_update {
                let target = &layers[landing];
                for i in 0..nb {
                    let mut best = (f64::INFINITY, 0usize);
                    for k in 0..nk {
                        let v = target.cost[k * nb + i];
                        if v < best.0 {
                            best = (v, k);
                        }
                        low[k * nb + i] = best;
                    }
                    let mut best = (f64::INFINITY, 0usize);
                    for k in (0..nk).rev() {
                        high[k * nb + i] = best;
                        let v = f64::from(self.levels[k].0) * d as f64 + target.cost[k * nb + i];
                        if v < best.0 {
                            best = (v, k);
                        }
                    }
                }
            }
            // Block j + ring's layer is no longer needed: its buffers take
            // block j's values (every entry is written below).
            let mut out = std::mem::take(&mut layers[j % ring]);
            for (k, &(kpu, capacity)) in self.levels.iter().enumerate() {
                let BlockRun { p, m, base } = self.block_run(j, capacity, &mut run_thresholds);
                let kf = f64::from(kpu);
                // b0 and b1 rise with b, so the counts of thresholds below
                // them are kept by two cursors over the sorted thresholds.
                let (mut run_below, mut down_below) = (0usize, 0usize);
                for b in 0..nb {
                    let b0 = b as f64 * self.step;
                    while run_below < run_thresholds.len() && run_thresholds[run_below] < b0 {
                        run_below += 1;
                    }
                    let run_violations = base + run_below as u32;
                    let b1 = (b0 + p).max(m);
                    let run_cost = kf * n as f64 + price * f64::from(run_violations);
                    let i1 = k * nb + self.bucket(b1);
                    let cont = &layers[next];
                    let mut best = (
                        if self.fits(b1) {
                            run_cost + cont.cost[i1]
                        } else {
                            f64::INFINITY
                        },
                        kf * n as f64 + cont.kpu_secs[i1],
                        run_violations + cont.violations[i1],
                        cont.rescales[i1],
                    );
                    let mut choice = 0u8;
                    if can_update && self.fits(b1 + down_arrivals) {
                        while down_below < down_thresholds.len() && down_thresholds[down_below] < b1
                        {
                            down_below += 1;
                        }
                        let down_violations = down_below as u32;
                        let i2 = self.bucket(b1 + down_arrivals);
                        let (lv, lk) = low[k * nb + i2];
                        let (hv, hk) = high[k * nb + i2];
                        let (v, k2, billed) = if kf * d as f64 + lv <= hv {
                            (kf * d as f64 + lv, lk, kf)
                        } else {
                            (hv, hk, f64::from(self.levels[hk].0))
                        };
                        let cost = run_cost + price * f64::from(down_violations) + v;
                        if cost < best.0 {
                            let target = &layers[landing];
                            let t = k2 * nb + i2;
                            best = (
                                cost,
                                kf * n as f64 + billed * d as f64 + target.kpu_secs[t],
                                run_violations + down_violations + target.violations[t],
                                target.rescales[t] + 1,
                            );
                            choice = u8::try_from(k2 + 1).unwrap_or(u8::MAX);
                        }
                    }
                    let o = k * nb + b;
                    out.cost[o] = best.0;
                    out.kpu_secs[o] = best.1;
                    out.violations[o] = best.2;
                    out.rescales[o] = best.3;
                    if let Some(decisions) = decisions.as_deref_mut() {
                        decisions[j * nk * nb + o] = choice;
                    }
                }
            }
            if let Some(sink) = layer_sink.as_deref_mut() {
                sink(j, &out.cost);
            }
            layers[j % ring] = out;
        }
        let first = &layers[0];
        let o = self.initial_level * nb;
        PricedOptimum {
            price,
            priced_cost: first.cost[o],
            kpu_secs: first.kpu_secs[o],
            violation_secs: u64::from(first.violations[o]),
            rescales: u64::from(first.rescales[o]),
        }
    }

    /// Follows recorded `decisions` from the start: the schedule they make,
    /// with its relaxed KPU-seconds and violation seconds, computed with the
    /// same arithmetic as the solve.
    fn follow(&self, price: f64, decisions: &[u8]) -> Plan {
        let nb = self.buckets + 1;
        let nk = self.levels.len();
        let blocks = self.blocks();
        let (mut j, mut k, mut b) = (0usize, self.initial_level, 0usize);
        let (mut kpu_secs, mut violations) = (0.0f64, 0u64);
        let mut priced_cost = 0.0f64;
        let mut rescales = Vec::new();
        let (mut run_thresholds, mut down_thresholds) = (Vec::new(), Vec::new());
        while j < blocks {
            let (kpu, capacity) = self.levels[k];
            let (start, end) = self.block_span(j);
            let n = (end - start) as f64;
            let BlockRun { p, m, base } = self.block_run(j, capacity, &mut run_thresholds);
            let b0 = b as f64 * self.step;
            let run_violations = base + run_thresholds.partition_point(|&t| t < b0) as u32;
            let b1 = (b0 + p).max(m);
            let kf = f64::from(kpu);
            kpu_secs += kf * n;
            violations += u64::from(run_violations);
            priced_cost += kf * n + price * f64::from(run_violations);
            match decisions[j * nk * nb + k * nb + b] {
                0 => {
                    b = self.bucket(b1);
                    j += 1;
                }
                choice => {
                    let k2 = usize::from(choice - 1);
                    let (d, down_arrivals) = self.block_down(j, &mut down_thresholds);
                    let down_violations = down_thresholds.partition_point(|&t| t < b1) as u32;
                    let billed = kf.max(f64::from(self.levels[k2].0)) * d as f64;
                    kpu_secs += billed;
                    violations += u64::from(down_violations);
                    priced_cost += billed + price * f64::from(down_violations);
                    rescales.push(Rescale {
                        at_secs: end as u64,
                        kpu: self.levels[k2].0,
                    });
                    b = self.bucket(b1 + down_arrivals);
                    j += 1 + self.downtime_blocks;
                    k = k2;
                }
            }
        }
        Plan {
            price,
            priced_cost,
            kpu_secs,
            violation_secs: violations,
            rescales,
        }
    }
}

/// The per-second programme (see [`Relaxed::solve_per_second`]): one state
/// of a level at one second.
#[derive(Debug, Clone)]
struct Entry {
    backlog: f64,
    cost: f64,
    kpu_secs: f64,
    violations: u32,
    rescales: u32,
    /// The last rescale on the way here, when the schedule is kept.
    path: Option<std::rc::Rc<Step>>,
}

/// One rescale of a kept schedule, with the one before it.
#[derive(Debug)]
struct Step {
    rescale: Rescale,
    before: Option<std::rc::Rc<Step>>,
}

/// Keeps the entries no other beats (less or equal backlog and cost), in
/// rising backlog and falling cost, then merges every run of entries whose
/// backlogs lie within `merge` records of the run's first into one with the
/// run's least backlog and least cost (and that cost's statistics): a
/// state at least as good as each, so the optimum can only fall.
fn prune(entries: &mut Vec<Entry>, merge: f64) {
    if entries.len() <= 1 {
        return;
    }
    entries.sort_by(|a, b| {
        a.backlog
            .total_cmp(&b.backlog)
            .then(a.cost.total_cmp(&b.cost))
    });
    let mut kept = 0;
    for i in 0..entries.len() {
        if kept > 0 && entries[i].cost >= entries[kept - 1].cost {
            continue;
        }
        let e = entries[i].clone();
        if kept > 0 && e.backlog - entries[kept - 1].backlog <= merge {
            // Within the run of the last kept entry: it takes this cost.
            let backlog = entries[kept - 1].backlog;
            entries[kept - 1] = Entry { backlog, ..e };
            continue;
        }
        entries[kept] = e;
        kept += 1;
    }
    entries.truncate(kept);
}

/// [`prune`] with violation seconds in the state, for
/// [`Relaxed::solve_within_budget`]: drops every entry over `budget`
/// violation seconds and every entry another beats on backlog, violations
/// and cost at once (each less or equal), then merges, among the entries of
/// equal violations, every run whose backlogs lie within `merge` records of
/// the run's first into one with the run's least backlog and least cost
/// (and that cost's statistics): a state at least as good as each on all
/// three, so the least KPU-seconds can only fall.
fn prune_within_budget(entries: &mut Vec<Entry>, merge: f64, budget: u32) {
    entries.retain(|e| e.violations <= budget);
    if entries.len() <= 1 {
        return;
    }
    entries.sort_by(|a, b| {
        a.backlog
            .total_cmp(&b.backlog)
            .then(a.violations.cmp(&b.violations))
            .then(a.cost.total_cmp(&b.cost))
    });
    let slots = budget as usize + 1;
    // least[v]: the least cost of a kept entry with at most v violations
    // (all kept so far have at most the current backlog); non-increasing.
    let mut least = vec![f64::INFINITY; slots];
    // run[v]: the kept entry of exactly v violations that starts the
    // current merge run of that count.
    let mut run: Vec<Option<usize>> = vec![None; slots];
    let mut kept = 0;
    for i in 0..entries.len() {
        let v = entries[i].violations as usize;
        if least[v] <= entries[i].cost {
            continue;
        }
        let e = entries[i].clone();
        for l in &mut least[v..] {
            if *l <= e.cost {
                break;
            }
            *l = e.cost;
        }
        if let Some(r) = run[v]
            && e.backlog - entries[r].backlog <= merge
        {
            // Within the run: same violations, less cost than the run's
            // entry (which set least[v]), its backlog kept.
            let backlog = entries[r].backlog;
            entries[r] = Entry { backlog, ..e };
            continue;
        }
        entries[kept] = e;
        run[v] = Some(kept);
        kept += 1;
    }
    entries.truncate(kept);
}

/// The block programme's priced cost-to-go at the prune times of a
/// [`NeededPrune`], for [`Relaxed::decide_within_budget`].
struct CostToGo {
    /// The block programme (for its grid).
    blocks: Solver,
    /// Seconds between two prune times.
    every: usize,
    /// Per price: the price and, per prune time (second `i x every`), per
    /// level x bucket, the least cost-to-go at that bucket or above in
    /// whole [`CostToGo::UNIT`]s, rounded down (and capped at `u16::MAX`
    /// units, also down): a quarter of the memory, still a lower bound.
    tables: Vec<(f64, Vec<Vec<u16>>)>,
    /// The violation budget.
    budget: u32,
    /// clairvoyant / needed, with rounding slack.
    limit: f64,
}

impl CostToGo {
    /// KPU-seconds per unit of the tables (their range: a million).
    const UNIT: f64 = 16.0;

    fn new(relaxed: &Relaxed, prune: &NeededPrune, budget: u32, limit: f64) -> Self {
        let blocks = Solver::new(relaxed, prune.resolution);
        let every = (prune.every_secs.max(1) as usize).div_ceil(blocks.block) * blocks.block;
        let nb = blocks.buckets + 1;
        let times = relaxed.lambda.len() / every + 1;
        let tables = prune
            .prices
            .iter()
            .map(|&price| {
                let mut table: Vec<Vec<u16>> = vec![Vec::new(); times];
                let mut sink = |j: usize, cost: &[f64]| {
                    let start = j * blocks.block;
                    if !start.is_multiple_of(every) {
                        return;
                    }
                    let mut least: Vec<u16> = Vec::with_capacity(cost.len());
                    for level in cost.chunks(nb) {
                        let from = least.len();
                        let mut low = f64::INFINITY;
                        least.extend(level.iter().rev().map(|&v| {
                            low = low.min(v);
                            // `as` saturates: a negative cost (none is) to
                            // 0, one past the range to u16::MAX, both down.
                            (low / Self::UNIT).floor() as u16
                        }));
                        least[from..].reverse();
                    }
                    table[start / every] = least;
                };
                blocks.run_recording(price, None, Some(&mut sink));
                (price, table)
            })
            .collect();
        Self {
            blocks,
            every,
            tables,
            budget,
            limit,
        }
    }

    /// Whether a running state of `level` at second `t` (a prune time) can
    /// still lead to a schedule within the budget and the limit (see
    /// [`Relaxed::decide_within_budget`]).
    fn keeps(&self, t: usize, level: usize, e: &Entry) -> bool {
        let nb = self.blocks.buckets + 1;
        let at = level * nb + self.blocks.bucket(e.backlog);
        let left = f64::from(self.budget.saturating_sub(e.violations));
        let mut rest = 0.0f64;
        for (price, table) in &self.tables {
            if let Some(&v) = table.get(t / self.every).and_then(|l| l.get(at)) {
                rest = rest.max(f64::from(v) * Self::UNIT - price * left);
            }
        }
        e.kpu_secs + rest <= self.limit
    }

    /// The memory of the tables, bytes.
    fn bytes(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|(_, t)| t.iter())
            .map(|l| l.capacity() * std::mem::size_of::<u16>())
            .sum()
    }
}

impl Solver {
    /// The per-second programme at `price`: exact restarts at any second,
    /// the exact backlog of every state, and states of one level within
    /// `merge_secs` x the peak input rate of backlog merged in the
    /// policy's favour; with `keep`, also the schedule reaching the optimum.
    ///
    /// With a `budget`, violation seconds are part of the state (see
    /// [`Relaxed::solve_within_budget`]): a state over the budget is
    /// dropped, and only states beaten on backlog, violations and cost at
    /// once are.
    ///
    /// With `cost_to_go` (and a budget), every prune time drops the running
    /// states that cannot lead to a schedule within the budget and its
    /// limit (see [`Relaxed::decide_within_budget`]); with `progress`, a
    /// line on stderr every simulated hour. Also returns the count of
    /// states the prune dropped.
    fn run_per_second(
        &self,
        price: f64,
        merge_secs: f64,
        budget: Option<u32>,
        keep: bool,
        cost_to_go: Option<&CostToGo>,
        progress: bool,
    ) -> (PricedOptimum, Vec<Rescale>, u64) {
        let merge = merge_secs.max(0.0) * self.peak;
        let started = std::time::Instant::now();
        let mut pruned = 0usize;
        let prune_states = |entries: &mut Vec<Entry>, merge: f64| match budget {
            Some(budget) => prune_within_budget(entries, merge, budget),
            None => prune(entries, merge),
        };
        let duration = self.lambda.len();
        let update = self.update_secs;
        let nk = self.levels.len();
        let slots = update + 1;
        let mut current: Vec<Vec<Entry>> = vec![Vec::new(); nk];
        current[self.initial_level].push(Entry {
            backlog: 0.0,
            cost: 0.0,
            kpu_secs: 0.0,
            violations: 0,
            rescales: 0,
            path: None,
        });
        let mut pending: Vec<Vec<Vec<Entry>>> = vec![vec![Vec::new(); nk]; slots];
        let mut down_thresholds: Vec<f64> = Vec::with_capacity(update);
        // Per target level, the sources billed the target's KPU (levels at
        // or below it) and those billed their own (above it, already billed).
        let mut below: Vec<Vec<Entry>> = vec![Vec::new(); nk];
        let mut above: Vec<Vec<Entry>> = vec![Vec::new(); nk];
        let mut scratch: Vec<Entry> = Vec::new();
        for t in 0..duration {
            let slot = t % slots;
            for k in 0..nk {
                if !pending[slot][k].is_empty() {
                    let mut landed = std::mem::take(&mut pending[slot][k]);
                    current[k].append(&mut landed);
                    pending[slot][k] = landed;
                    prune_states(&mut current[k], merge);
                }
            }
            if let Some(c) = cost_to_go
                && t > 0
                && t.is_multiple_of(c.every)
            {
                for (k, entries) in current.iter_mut().enumerate() {
                    let before = entries.len();
                    entries.retain(|e| c.keeps(t, k, e));
                    pruned += before - entries.len();
                }
            }
            if progress && t.is_multiple_of(3600) && t > 0 {
                let count = |v: &Vec<Entry>| v.len();
                let kept: usize = current.iter().map(count).sum();
                let landing: usize = pending.iter().flatten().map(count).sum();
                let capacity: usize = current
                    .iter()
                    .chain(pending.iter().flatten())
                    .chain(below.iter())
                    .chain(above.iter())
                    .map(Vec::capacity)
                    .sum();
                let bytes =
                    capacity * std::mem::size_of::<Entry>() + cost_to_go.map_or(0, CostToGo::bytes);
                eprintln!(
                    "{:>5.1} h simulated: {kept} states kept, {landing} landing, {pruned} pruned so far; about {:.0} MB of states and tables; {:.0} s",
                    t as f64 / 3600.0,
                    bytes as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
            }
            // An update whose restart outlasts the run is beaten by none:
            // billed at least as much, processing nothing.
            if t + update <= duration {
                let arrivals = self.down(t, t + update, &mut down_thresholds);
                let mut acc: Vec<Entry> = Vec::new();
                for k in 0..nk {
                    acc.extend_from_slice(&current[k]);
                    prune_states(&mut acc, merge);
                    below[k].clone_from(&acc);
                }
                acc.clear();
                for k in (0..nk).rev() {
                    above[k].clone_from(&acc);
                    let bill = f64::from(self.levels[k].0) * update as f64;
                    acc.extend(current[k].iter().map(|e| Entry {
                        cost: e.cost + bill,
                        kpu_secs: e.kpu_secs + bill,
                        ..e.clone()
                    }));
                    prune_states(&mut acc, merge);
                }
                let landing = (t + update) % slots;
                for k2 in 0..nk {
                    let bill = f64::from(self.levels[k2].0) * update as f64;
                    scratch.clear();
                    let kpu = self.levels[k2].0;
                    let mut land = |e: &Entry, bill: f64| {
                        let v = down_thresholds.partition_point(|&x| x < e.backlog) as u32;
                        if budget.is_some_and(|budget| e.violations + v > budget) {
                            return;
                        }
                        scratch.push(Entry {
                            backlog: e.backlog + arrivals,
                            cost: e.cost + bill + price * f64::from(v),
                            kpu_secs: e.kpu_secs + bill,
                            violations: e.violations + v,
                            rescales: e.rescales + 1,
                            path: keep.then(|| {
                                std::rc::Rc::new(Step {
                                    rescale: Rescale {
                                        at_secs: t as u64,
                                        kpu,
                                    },
                                    before: e.path.clone(),
                                })
                            }),
                        });
                    };
                    below[k2].iter().for_each(|e| land(e, bill));
                    above[k2].iter().for_each(|e| land(e, 0.0));
                    let into = &mut pending[landing][k2];
                    into.extend_from_slice(&scratch);
                    prune_states(into, merge);
                }
            }
            let (lambda, threshold) = (self.lambda[t], self.threshold[t]);
            for (k, entries) in current.iter_mut().enumerate() {
                let (kpu, capacity) = self.levels[k];
                let kf = f64::from(kpu);
                for e in entries.iter_mut() {
                    e.backlog = (e.backlog + lambda - capacity).max(0.0);
                    let v = u32::from(e.backlog > threshold);
                    e.cost += kf + price * f64::from(v);
                    e.kpu_secs += kf;
                    e.violations += v;
                }
                prune_states(entries, merge);
            }
        }
        let last = duration % slots;
        let best = current
            .iter()
            .chain(pending[last].iter())
            .flatten()
            .min_by(|a, b| a.cost.total_cmp(&b.cost))
            .cloned()
            .unwrap_or(Entry {
                backlog: 0.0,
                cost: f64::INFINITY,
                kpu_secs: 0.0,
                violations: 0,
                rescales: 0,
                path: None,
            });
        let mut rescales = Vec::new();
        let mut step = best.path.clone();
        while let Some(s) = step {
            rescales.push(s.rescale);
            step = s.before.clone();
        }
        rescales.reverse();
        let optimum = PricedOptimum {
            price,
            priced_cost: best.cost,
            kpu_secs: best.kpu_secs,
            violation_secs: u64::from(best.violations),
            rescales: u64::from(best.rescales),
        };
        (optimum, rescales, pruned as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least priced cost over a fixed set of (KPU-seconds, violation
    /// seconds) schedules, as the programme would return it.
    fn optimum(schedules: &[(f64, u64)], price: f64) -> PricedOptimum {
        let &(kpu_secs, violation_secs) = schedules
            .iter()
            .min_by(|a, b| (a.0 + price * a.1 as f64).total_cmp(&(b.0 + price * b.1 as f64)))
            .expect("schedules");
        PricedOptimum {
            price,
            priced_cost: kpu_secs + price * violation_secs as f64,
            kpu_secs,
            violation_secs,
            rescales: 0,
        }
    }

    /// The least ceiling over every price, by brute force: the priced cost
    /// is piecewise linear, so its best is at price 0 or where two
    /// schedules' lines cross.
    fn brute_force(schedules: &[(f64, u64)], clairvoyant: f64, budget: u64) -> f64 {
        let mut prices = vec![0.0];
        for a in schedules {
            for b in schedules.iter().filter(|b| b.1 < a.1) {
                prices.push((b.0 - a.0) / (a.1 - b.1) as f64);
            }
        }
        prices
            .into_iter()
            .map(|p| optimum(schedules, p).efficiency_ceiling(clairvoyant, budget))
            .fold(f64::INFINITY, f64::min)
    }

    const SCHEDULES: [(f64, u64); 6] = [
        (30_000.0, 4000),
        (36_000.0, 900),
        (41_000.0, 300),
        (47_000.0, 120),
        (52_000.0, 40),
        (80_000.0, 0),
    ];

    #[test]
    fn the_search_finds_the_least_ceiling_and_a_floor_below_it() {
        for budget in [0, 10, 40, 100, 200, 1000, 5000] {
            let search = PriceSearch {
                tolerance: 1e-12,
                max_solves: 60,
                ..PriceSearch::default()
            };
            let outcome = search.run(20_000.0, budget, |p| optimum(&SCHEDULES, p));
            let least = brute_force(&SCHEDULES, 20_000.0, budget);
            assert_eq!(outcome.stop, SearchStop::Converged, "budget {budget}");
            assert!(
                (outcome.ceiling - least).abs() <= 1e-9 * least,
                "budget {budget}: searched {} against {least}",
                outcome.ceiling
            );
            assert!(outcome.floor <= least * (1.0 + 1e-12), "budget {budget}");
            assert!(
                outcome.optima.len() <= 12,
                "budget {budget}: {} solves",
                outcome.optima.len()
            );
        }
    }

    fn entry(backlog: f64, cost: f64) -> Entry {
        Entry {
            backlog,
            cost,
            kpu_secs: cost,
            violations: 0,
            rescales: 0,
            path: None,
        }
    }

    #[test]
    fn prune_keeps_the_unbeaten_states_and_merges_in_the_policy_s_favour() {
        let mut entries = vec![
            entry(50.0, 10.0),
            entry(0.0, 30.0),
            entry(10.0, 30.0),
            entry(12.0, 25.0),
            entry(0.0, 31.0),
            entry(100.0, 12.0),
            entry(53.0, 9.0),
        ];
        prune(&mut entries, 0.0);
        let kept: Vec<(f64, f64)> = entries.iter().map(|e| (e.backlog, e.cost)).collect();
        assert_eq!(kept, [(0.0, 30.0), (12.0, 25.0), (50.0, 10.0), (53.0, 9.0)]);
        // Within 5 records of a run's first: the run's least backlog and cost.
        prune(&mut entries, 5.0);
        let kept: Vec<(f64, f64)> = entries.iter().map(|e| (e.backlog, e.cost)).collect();
        assert_eq!(kept, [(0.0, 30.0), (12.0, 25.0), (50.0, 9.0)]);
    }

    fn entry_v(backlog: f64, violations: u32, cost: f64) -> Entry {
        Entry {
            violations,
            ..entry(backlog, cost)
        }
    }

    /// The (backlog, violations, cost) of each entry.
    fn states(entries: &[Entry]) -> Vec<(f64, u32, f64)> {
        entries
            .iter()
            .map(|e| (e.backlog, e.violations, e.cost))
            .collect()
    }

    #[test]
    fn prune_within_budget_keeps_states_unbeaten_on_all_three() {
        let mut entries = vec![
            entry_v(0.0, 5, 30.0),
            entry_v(0.0, 2, 40.0),
            entry_v(10.0, 3, 35.0),
            entry_v(10.0, 1, 50.0),
            entry_v(20.0, 6, 35.0),
            entry_v(20.0, 9, 1.0),
            entry_v(30.0, 0, 45.0),
            entry_v(30.0, 2, 39.0),
            entry_v(40.0, 5, 29.0),
        ];
        prune_within_budget(&mut entries, 0.0, 8);
        let kept = states(&entries);
        // (20, 9) is over the budget and (20, 6, 35) is beaten by
        // (0, 5, 30); (30, 2, 39) stays beside (0, 2, 40), which costs more.
        assert_eq!(
            kept,
            [
                (0.0, 2, 40.0),
                (0.0, 5, 30.0),
                (10.0, 1, 50.0),
                (10.0, 3, 35.0),
                (30.0, 0, 45.0),
                (30.0, 2, 39.0),
                (40.0, 5, 29.0),
            ]
        );
        // Within 35 records and of equal violations: merged into the
        // least backlog and least cost; other counts stay apart.
        prune_within_budget(&mut entries, 35.0, 8);
        let kept = states(&entries);
        assert_eq!(
            kept,
            [
                (0.0, 2, 39.0),
                (0.0, 5, 30.0),
                (10.0, 1, 50.0),
                (10.0, 3, 35.0),
                (30.0, 0, 45.0),
                (40.0, 5, 29.0),
            ]
        );
        // A budget of 2 drops every state over it.
        prune_within_budget(&mut entries, 0.0, 2);
        let kept = states(&entries);
        assert_eq!(kept, [(0.0, 2, 39.0), (10.0, 1, 50.0), (30.0, 0, 45.0)]);
    }

    #[test]
    fn the_search_stops_once_the_verdict_is_known() {
        let at = |needed| PriceSearch {
            needed: Some(needed),
            ..PriceSearch::default()
        };
        let least = brute_force(&SCHEDULES, 20_000.0, 100);
        let ruled_out = at(least * 1.05).run(20_000.0, 100, |p| optimum(&SCHEDULES, p));
        assert_eq!(ruled_out.stop, SearchStop::RuledOut);
        assert!(ruled_out.ceiling < least * 1.05);
        let open = at(least * 0.95).run(20_000.0, 100, |p| optimum(&SCHEDULES, p));
        assert_eq!(open.stop, SearchStop::CannotRuleOut);
        assert!(open.floor >= least * 0.95 && open.floor <= least * (1.0 + 1e-12));
    }
}
