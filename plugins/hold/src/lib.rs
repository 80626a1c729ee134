//! `hold`: the observe-only baseline.
//!
//! It never changes an application's capacity: every decision is a hold
//! with the reason "observe only". Run beside another policy's results (or
//! under `flinkscale simulate`) it shows what the application would have
//! cost and how far behind it would have fallen at its initial capacity,
//! which is the yardstick every scaling policy has to beat.
//!
//! # Parameters
//!
//! None. Any parameter is an error, so that a configuration meant for
//! another policy is not silently run as observe-only.

#![warn(missing_docs)]

use flinkscale_plugin::{Decision, Evaluation, Parameter, Params, Policy, export_policy};

/// The reason of every decision.
pub const REASON: &str = "observe only";

/// The observe-only policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy;

impl Policy for HoldPolicy {
    const SUMMARY: &'static str =
        "Never changes the capacity: the observe-only baseline every policy has to beat.";
    // None: any key is refused before `configure`.
    const PARAMETERS: &'static [Parameter] = &[];

    fn configure(_params: Params) -> Result<Self, String> {
        Ok(HoldPolicy)
    }

    fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
        Ok(Decision::hold(REASON))
    }
}

export_policy!(HoldPolicy);

#[cfg(test)]
mod tests {
    use flinkscale_plugin::testing::{check_declarations, configure};
    use flinkscale_plugin::{Action, AppStatus, Application};

    use super::*;

    fn evaluation(kpu: u32) -> Evaluation {
        Evaluation {
            now_ms: 1_700_000_000_000,
            app: Application {
                name: "orders".to_owned(),
                status: AppStatus::Running,
                kpu,
                parallelism: kpu,
                parallelism_per_kpu: 1,
                min_kpu: 1,
                max_kpu: 32,
                version_id: 1,
                last_rescale_ms: None,
                last_update_duration_secs: None,
            },
            metrics: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
        }
    }

    #[test]
    fn holds_whatever_the_capacity() {
        let mut policy = configure::<HoldPolicy>("{}").expect("no parameters");
        for kpu in [1, 8, 32] {
            let decision = policy.decide(&evaluation(kpu)).expect("decide succeeds");
            assert_eq!(decision.action, Action::Hold);
            assert_eq!(decision.reason, "observe only");
        }
    }

    #[test]
    fn any_parameter_is_refused() {
        let error =
            configure::<HoldPolicy>(r#"{"target": 0.7}"#).expect_err("hold takes no parameters");
        assert_eq!(error, "unknown parameter `target`; valid parameters: none");
    }

    #[test]
    fn declarations_are_well_formed() {
        assert_eq!(check_declarations::<HoldPolicy>(), Ok(()));
    }
}
