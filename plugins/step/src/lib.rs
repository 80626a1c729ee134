//! `step`: the reference design's step-scaling policy.
//!
//! Two alarms drive it, as in the reference design's CloudWatch alarms +
//! Step Functions + Lambda: while the scale-out alarm is in ALARM the
//! application grows by a factor, while the scale-in alarm is in ALARM it
//! shrinks by a factor, always within [`min_kpu`, `max_kpu`]. The agent's
//! controller supplies the rest of the reference loop (wait for the update,
//! grace period, ask again).
//!
//! # Parameters
//!
//! Declared, with their kinds, defaults and meanings, in
//! [`StepPolicy`]'s `PARAMETERS` (`flinkscale plugin describe step` prints
//! them): `scale_out_alarm` and `scale_in_alarm` (required), `operation`
//! (`"multiply"` or `"add"`), `scale_out_factor` and `scale_in_factor`
//! (2 by default).
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

use flinkscale_plugin::{
    AlarmState, Decision, Evaluation, Parameter, Params, Policy, export_policy,
};
use serde::Deserialize;

pub mod arithmetic;

use arithmetic::{Direction, Operation, Step};

/// The configured step policy: its parameters, checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepPolicy {
    scale_out_alarm: String,
    scale_in_alarm: String,
    operation: Operation,
    scale_out_factor: u32,
    scale_in_factor: u32,
}

impl Policy for StepPolicy {
    const SUMMARY: &'static str = "The reference design's step scaling: multiply (or add to) the \
         KPU while the scale-out alarm fires, divide (or subtract) while the scale-in alarm fires.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::alarm_id("scale_out_alarm")
            .required()
            .meaning("The alarm that asks for more capacity."),
        Parameter::alarm_id("scale_in_alarm")
            .required()
            .meaning("The alarm that asks for less capacity; not the scale-out alarm."),
        Parameter::text("operation")
            .default("\"multiply\"")
            .meaning(
                "\"multiply\": out to kpu x factor, in to floor(kpu / factor) (the reference's \
             Multiply/Divide); \"add\": out to kpu + factor, in to kpu - factor (Add/Subtract).",
            ),
        Parameter::integer("scale_out_factor").default("2").meaning(
            "The scale-out factor: a whole number, at least 2 with \"multiply\" and at least 1 \
             with \"add\".",
        ),
        Parameter::integer("scale_in_factor")
            .default("2")
            .meaning("The scale-in factor, as `scale_out_factor`."),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let policy: StepPolicy = params.parse()?;
        for (name, id) in [
            ("scale_out_alarm", &policy.scale_out_alarm),
            ("scale_in_alarm", &policy.scale_in_alarm),
        ] {
            if id.is_empty() {
                return Err(format!(
                    "parameter `{name}` must name an alarm, found the empty string"
                ));
            }
        }
        if policy.scale_out_alarm == policy.scale_in_alarm {
            return Err(format!(
                "`scale_out_alarm` and `scale_in_alarm` must name different alarms, \
                 both are `{}`",
                policy.scale_out_alarm
            ));
        }
        let operation = policy.operation;
        operation.check_factor("scale_out_factor", policy.scale_out_factor)?;
        operation.check_factor("scale_in_factor", policy.scale_in_factor)?;
        Ok(policy)
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
            let mut reason =
                String::with_capacity(64 + self.scale_out_alarm.len() + self.scale_in_alarm.len());
            reason.push_str("no alarm in ALARM (scale-out `");
            reason.push_str(&self.scale_out_alarm);
            reason.push_str("`: ");
            reason.push_str(out_state.as_str());
            reason.push_str(", scale-in `");
            reason.push_str(&self.scale_in_alarm);
            reason.push_str("`: ");
            reason.push_str(in_state.as_str());
            reason.push(')');
            return Ok(Decision::hold(reason));
        };
        let step = arithmetic::step(
            self.operation,
            direction,
            factor,
            app.kpu,
            app.min_kpu,
            app.max_kpu,
        );
        // The reason is built with `push_str` into one buffer rather than
        // with `format!`: this runs on every decision, and the formatting
        // machinery was a tenth of a warm call.
        let mut reason = String::with_capacity(128 + alarm.len() + self.scale_in_alarm.len());
        match &step {
            Step::AtLimit { limit } => {
                reason.push_str(match direction {
                    Direction::Out => "already at max KPU (",
                    Direction::In => "already at min KPU (",
                });
                arithmetic::push_u32(&mut reason, *limit);
                reason.push(')');
            }
            Step::To { arithmetic, .. } => {
                reason.push('`');
                reason.push_str(alarm);
                reason.push_str("` is in ALARM: ");
                reason.push_str(arithmetic);
            }
        }
        if direction == Direction::Out && in_state == AlarmState::Alarm {
            reason.push_str(" (scale-in `");
            reason.push_str(&self.scale_in_alarm);
            reason.push_str("` is also in ALARM; scale-out wins)");
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
