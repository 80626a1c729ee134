//! `step`: the reference design's step-scaling policy.
//!
//! Two alarms drive it, as in the reference design's CloudWatch alarms +
//! Step Functions + Lambda: while the scale-out alarm is in ALARM the
//! application grows by a factor, while the scale-in alarm is in ALARM it
//! shrinks by one, always within [`min_kpu`, `max_kpu`]. The agent's
//! controller supplies the rest of the reference loop (wait for the update,
//! grace period, ask again).
//!
//! # Parameters
//!
//! | parameter          | default      | meaning |
//! |--------------------|--------------|---------|
//! | `scale_out_alarm`  | required     | id of the alarm that asks for more capacity |
//! | `scale_in_alarm`   | required     | id of the alarm that asks for less capacity |
//! | `operation`        | `"multiply"` | `"multiply"` (reference: Multiply/Divide) or `"add"` (Add/Subtract) |
//! | `scale_out_factor` | `2`          | a whole number; at least 2 for `multiply`, at least 1 for `add` |
//! | `scale_in_factor`  | `2`          | as `scale_out_factor` |
//!
//! The alarm ids are required (no `"scale-out"` default) so that the
//! configuration says which alarms drive the application and
//! `flinkscale validate` can check that they exist. Unknown parameters are
//! an error, so a misspelt one cannot silently fall back to a default.
//!
//! Factors are whole numbers because capacity is whole KPU and the
//! reference Lambda computes on integers: `multiply` by 1.5 would need a
//! rounding rule the reference does not have. A `multiply` factor of 1
//! would never change anything and is refused.
//!
//! # Decision
//!
//! - Scale-out alarm in ALARM: target = kpu x factor (or kpu + factor),
//!   clamped to [`min_kpu`, `max_kpu`]; at (or above) `max_kpu`, hold with
//!   "already at max KPU (N)". Scale-out is checked first and wins when both
//!   alarms are in ALARM: in the reference design only the alarm that fired
//!   starts its state machine, and running short of capacity costs more than
//!   running a little over.
//! - Else scale-in alarm in ALARM: target = floor(kpu / factor) (or
//!   kpu - factor), clamped to [max(`min_kpu`, 1), `max_kpu`]; at (or below)
//!   that floor, hold with "already at min KPU (N)".
//! - Else hold, naming both alarms' states.
//!
//! An alarm id that the application does not configure is an error at
//! decision time (the agent then holds and logs it). The policy does not look
//! at the application's status: the agent never rescales an application that
//! is not RUNNING, whatever the policy says.

#![warn(missing_docs)]

use flinkscale_plugin::{AlarmState, Decision, Evaluation, Params, Policy, export_policy};

pub mod arithmetic;

use arithmetic::{Direction, Operation, Step};

/// The parameters this policy accepts.
const KNOWN_PARAMS: &[&str] = &[
    "scale_out_alarm",
    "scale_in_alarm",
    "operation",
    "scale_out_factor",
    "scale_in_factor",
];

/// Factor used when `scale_out_factor` or `scale_in_factor` is absent.
const DEFAULT_FACTOR: u32 = 2;

/// The configured step policy.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPolicy {
    scale_out_alarm: String,
    scale_in_alarm: String,
    operation: Operation,
    scale_out_factor: u32,
    scale_in_factor: u32,
}

impl Policy for StepPolicy {
    fn configure(params: Params) -> Result<Self, String> {
        params.deny_unknown(KNOWN_PARAMS)?;
        let scale_out_alarm = params.get_str("scale_out_alarm")?.to_owned();
        let scale_in_alarm = params.get_str("scale_in_alarm")?.to_owned();
        for (name, id) in [
            ("scale_out_alarm", &scale_out_alarm),
            ("scale_in_alarm", &scale_in_alarm),
        ] {
            if id.is_empty() {
                return Err(format!(
                    "parameter `{name}` must name an alarm, found the empty string"
                ));
            }
        }
        if scale_out_alarm == scale_in_alarm {
            return Err(format!(
                "`scale_out_alarm` and `scale_in_alarm` must name different alarms, \
                 both are `{scale_out_alarm}`"
            ));
        }
        let operation = Operation::parse(params.get_str_or("operation", "multiply")?)?;
        let scale_out_factor = params.get_u32_or("scale_out_factor", DEFAULT_FACTOR)?;
        let scale_in_factor = params.get_u32_or("scale_in_factor", DEFAULT_FACTOR)?;
        operation.check_factor("scale_out_factor", scale_out_factor)?;
        operation.check_factor("scale_in_factor", scale_in_factor)?;
        Ok(StepPolicy {
            scale_out_alarm,
            scale_in_alarm,
            operation,
            scale_out_factor,
            scale_in_factor,
        })
    }

    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        let out_state = evaluation.require_alarm(&self.scale_out_alarm)?.state;
        let in_state = evaluation.require_alarm(&self.scale_in_alarm)?.state;
        let app = &evaluation.app;
        let (alarm, direction, factor) = if out_state == AlarmState::Alarm {
            (&self.scale_out_alarm, Direction::Out, self.scale_out_factor)
        } else if in_state == AlarmState::Alarm {
            (&self.scale_in_alarm, Direction::In, self.scale_in_factor)
        } else {
            return Ok(Decision::hold(format!(
                "no alarm in ALARM (scale-out `{}`: {out_state}, scale-in `{}`: {in_state})",
                self.scale_out_alarm, self.scale_in_alarm
            )));
        };
        let step = arithmetic::step(
            self.operation,
            direction,
            factor,
            app.kpu,
            app.min_kpu,
            app.max_kpu,
        );
        let mut reason = match &step {
            Step::AtLimit { limit } => match direction {
                Direction::Out => format!("already at max KPU ({limit})"),
                Direction::In => format!("already at min KPU ({limit})"),
            },
            Step::To { arithmetic, .. } => format!("`{alarm}` is in ALARM: {arithmetic}"),
        };
        if direction == Direction::Out && in_state == AlarmState::Alarm {
            reason.push_str(&format!(
                " (scale-in `{}` is also in ALARM; scale-out wins)",
                self.scale_in_alarm
            ));
        }
        Ok(match step {
            Step::AtLimit { .. } => Decision::hold(reason),
            Step::To { kpu, .. } => Decision::scale_to(kpu, reason),
        })
    }
}

export_policy!(StepPolicy);

#[cfg(test)]
mod tests;
