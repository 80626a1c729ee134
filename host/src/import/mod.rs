//! Importing an existing autoscaler into a flinkscale configuration.
//!
//! Operators who run MSF's reference autoscaler (CloudWatch alarms ->
//! EventBridge -> Step Functions -> Lambda, deployed from a CloudFormation
//! template) should not have to re-derive its settings by hand: [`cfn`]
//! reads the template (built in, [`cfn::REFERENCE_TEMPLATE`], or the one
//! they deployed) with the stack's parameter values and
//! produces the flinkscale configuration that watches the same metric with
//! the same alarms and applies the same `step` arithmetic. It is pure: the
//! caller reads the files and writes the result ([`crate::cli`]).
//! [`alarms`] does the same from the CloudWatch alarms an operator already
//! has (the caller calls DescribeAlarms).

pub mod alarms;
pub mod cfn;
mod template;
mod yaml;

#[cfg(test)]
mod tests;
