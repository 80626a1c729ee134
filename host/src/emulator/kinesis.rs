//! Managed Service for Apache Flink (kinesisanalyticsv2):
//! DescribeApplication, UpdateApplication and ListApplications over the
//! model's applications, with the model's UpdateApplication semantics and
//! errors (`docs/SIMULATION.md`).
//!
//! Field names follow the SDK's generated deserialisers
//! (`aws-sdk-kinesisanalyticsv2/src/protocol_serde/`). Timestamps the model
//! keeps in model time are shown in wall time.

use super::value::{AwsError, ErrorCodes, Reader, Value};
use super::{Clock, Core};
use crate::sim::AppView;

/// MSF answers malformed requests with InvalidArgumentException, a typed
/// error of every operation here.
const CODES: ErrorCodes = ErrorCodes {
    missing: "InvalidArgumentException",
    invalid: "InvalidArgumentException",
};

/// Runs one kinesisanalyticsv2 operation.
pub(crate) fn call(core: &mut Core, operation: &str, input: &Value) -> Result<Value, AwsError> {
    match operation {
        "DescribeApplication" => describe_application(core, input),
        "UpdateApplication" => update_application(core, input),
        "ListApplications" => list_applications(core, input),
        _ => Err(super::unknown_operation(operation)),
    }
}

/// An ApplicationDetail.
fn detail(view: &AppView, clock: &Clock) -> Value {
    let parallelism = Value::map([
        ("ConfigurationType", Value::str("CUSTOM")),
        ("Parallelism", Value::Int(i64::from(view.parallelism))),
        (
            "ParallelismPerKPU",
            Value::Int(i64::from(view.parallelism_per_kpu)),
        ),
        (
            "CurrentParallelism",
            Value::Int(i64::from(view.parallelism)),
        ),
        ("AutoScalingEnabled", Value::Bool(view.autoscaling_enabled)),
    ]);
    let mut detail = Value::map([
        ("ApplicationARN", Value::str(&view.arn)),
        ("ApplicationName", Value::str(&view.name)),
        (
            "ApplicationDescription",
            Value::str("Emulated by flinkscale."),
        ),
        ("RuntimeEnvironment", Value::str(view.runtime_environment)),
        (
            "ServiceExecutionRole",
            Value::Str(format!(
                "arn:aws:iam::123456789012:role/{}-service-role",
                view.name
            )),
        ),
        ("ApplicationStatus", Value::str(view.status.to_string())),
        (
            "ApplicationVersionId",
            Value::Int(i64::try_from(view.version_id).unwrap_or(i64::MAX)),
        ),
        (
            "CreateTimestamp",
            Value::timestamp_ms(clock.to_wall_ms(view.create_timestamp_ms)),
        ),
        ("ApplicationMode", Value::str("STREAMING")),
        (
            "ApplicationConfigurationDescription",
            Value::map([(
                "FlinkApplicationConfigurationDescription",
                Value::map([("ParallelismConfigurationDescription", parallelism)]),
            )]),
        ),
    ]);
    if let Some(ms) = view.last_update_timestamp_ms {
        detail.insert(
            "LastUpdateTimestamp",
            Value::timestamp_ms(clock.to_wall_ms(ms)),
        );
    }
    if let Some(from) = view.rolled_back_from {
        // The version the rollback reverted from, and the one it went back
        // to: the one before it.
        let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        detail.insert("ApplicationVersionRolledBackFrom", int(from));
        detail.insert(
            "ApplicationVersionRolledBackTo",
            int(from.saturating_sub(1)),
        );
    }
    detail
}

fn describe_application(core: &Core, input: &Value) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let view = core.world.describe(r.str("ApplicationName")?)?;
    Ok(Value::map([(
        "ApplicationDetail",
        detail(&view, &core.clock),
    )]))
}

/// A u32 member, or InvalidArgumentException.
fn opt_u32(r: &Reader<'_>, key: &str) -> Result<Option<u32>, AwsError> {
    r.opt_i64(key)?
        .map(|n| {
            u32::try_from(n).map_err(|_| r.invalid(format!("{key} {n} must be a positive number.")))
        })
        .transpose()
}

fn update_application(core: &mut Core, input: &Value) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let name = r.str("ApplicationName")?;
    // Unknown applications are ResourceNotFound whatever else is wrong.
    core.world.describe(name)?;
    let version = r.opt_i64("CurrentApplicationVersionId")?.ok_or_else(|| {
        r.invalid("CurrentApplicationVersionId is required by the emulator (ConditionalToken is not emulated).")
    })?;
    let version = u64::try_from(version).map_err(|_| {
        r.invalid(format!(
            "CurrentApplicationVersionId {version} must be positive."
        ))
    })?;
    let update = r
        .opt_struct("ApplicationConfigurationUpdate", "ApplicationConfigurationUpdate.")?
        .map(|u| {
            u.opt_struct(
                "FlinkApplicationConfigurationUpdate",
                "ApplicationConfigurationUpdate.FlinkApplicationConfigurationUpdate.",
            )
        })
        .transpose()?
        .flatten()
        .map(|f| {
            f.opt_struct(
                "ParallelismConfigurationUpdate",
                "ApplicationConfigurationUpdate.FlinkApplicationConfigurationUpdate.ParallelismConfigurationUpdate.",
            )
        })
        .transpose()?
        .flatten();
    let (parallelism, per_kpu, autoscaling) = match update {
        None => (None, None, None),
        Some(p) => match p.opt_str("ConfigurationTypeUpdate")? {
            // DEFAULT puts MSF's defaults back: one subtask, one per KPU,
            // MSF's own autoscaling on.
            Some("DEFAULT") => (Some(1), Some(1), Some(true)),
            None | Some("CUSTOM") => (
                opt_u32(&p, "ParallelismUpdate")?,
                opt_u32(&p, "ParallelismPerKPUUpdate")?,
                p.opt_bool("AutoScalingEnabledUpdate")?,
            ),
            Some(other) => {
                return Err(r.invalid(format!(
                    "ConfigurationTypeUpdate {other:?} must be CUSTOM or DEFAULT."
                )));
            }
        },
    };
    let view = core
        .world
        .update_application(name, version, parallelism, per_kpu, autoscaling)?;
    Ok(Value::map([
        ("ApplicationDetail", detail(&view, &core.clock)),
        (
            "OperationId",
            Value::Str(format!("emulated-{}-{}", view.name, view.version_id)),
        ),
    ]))
}

fn list_applications(core: &Core, input: &Value) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let limit = match r.opt_i64("Limit")? {
        None => 50,
        Some(n @ 1..=50) => n as usize,
        Some(n) => return Err(r.invalid(format!("Limit {n} must be between 1 and 50."))),
    };
    let apps = core.world.applications();
    let offset = match r.opt_str("NextToken")? {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|o| *o > 0 && *o < apps.len())
            .ok_or_else(|| r.invalid("The NextToken is not one this service gave."))?,
    };
    let end = (offset + limit).min(apps.len());
    let summaries = apps[offset..end]
        .iter()
        .map(|app| {
            let view = app.view();
            Value::map([
                ("ApplicationName", Value::str(&view.name)),
                ("ApplicationARN", Value::str(&view.arn)),
                ("ApplicationStatus", Value::str(view.status.to_string())),
                (
                    "ApplicationVersionId",
                    Value::Int(i64::try_from(view.version_id).unwrap_or(i64::MAX)),
                ),
                ("RuntimeEnvironment", Value::str(view.runtime_environment)),
                ("ApplicationMode", Value::str("STREAMING")),
            ])
        })
        .collect();
    let mut output = Value::map([("ApplicationSummaries", Value::List(summaries))]);
    if end < apps.len() {
        output.insert("NextToken", Value::Str(end.to_string()));
    }
    Ok(output)
}
