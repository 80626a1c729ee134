//! CloudWatch's metric reads: GetMetricData (MetricStat queries, every
//! statistic, metric-math Expression queries in the subset of
//! [`crate::metrics::math`], `ReturnData`, NextToken pages, but none for
//! a request with metric math, as CloudWatch gives none, both scan
//! orders) and ListMetrics, over the metrics the model publishes.
//!
//! The emulator's periods are wall-clock periods: a period of P wall
//! seconds covers P x speed model seconds, and with a speed that is not a
//! whole number its model bounds fall between seconds. So the emulator maps
//! each wall period to the model seconds it holds (a model second belongs
//! to the wall period in which it starts) and hands them to the world's one
//! aggregation, [`crate::sim::publish::period_value`], the simulator's too.
//! With speed 1 the result is exactly `World::metric_data`'s.

use std::collections::BTreeMap;

use super::value::{AwsError, ErrorCodes, Reader, Value};
use super::{Clock, Core};
use crate::metrics::Datapoint;
use crate::sim::{Statistic, World, publish};

/// The codes CloudWatch answers malformed requests with (query-compatible
/// spellings, as the SDKs and boto3 expect them).
pub(crate) const CODES: ErrorCodes = ErrorCodes {
    missing: "MissingParameter",
    invalid: "InvalidParameterValue",
};

/// GetMetricData takes at most this many queries.
const MAX_QUERIES: usize = 500;
/// The most periods a query's range may hold: CloudWatch answers at most
/// 100,800 datapoints in a whole call, and a range of more periods would
/// have the emulator walk (and `FILL` or a number fill) every one of them
/// while every other call waits.
pub(crate) const MAX_PERIODS_PER_QUERY: i64 = 100_800;
/// A ListMetrics page holds at most this many metrics (as in CloudWatch).
const LIST_METRICS_PAGE: usize = 500;

/// One metric, one statistic, one period: a MetricStat or an alarm's
/// metric.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricStat {
    /// Namespace, e.g. `AWS/KinesisAnalytics`.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions, name -> value (matched exactly).
    pub dimensions: BTreeMap<String, String>,
    /// The statistic of each period.
    pub statistic: Statistic,
    /// The period in wall seconds.
    pub period_secs: u32,
}

/// Reads a `Dimensions` list of `{Name, Value}`.
pub(crate) fn read_dimensions(
    r: &Reader<'_>,
    key: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut dimensions = BTreeMap::new();
    for item in r.list(key)? {
        let d = r.item(item, "Dimensions.")?;
        let name = d.str("Name")?;
        let value = d.str("Value")?;
        if dimensions
            .insert(name.to_owned(), value.to_owned())
            .is_some()
        {
            return Err(r.invalid(format!("The dimension {name} is given twice.")));
        }
    }
    Ok(dimensions)
}

/// A `Dimensions` list as CloudWatch answers it.
pub(crate) fn dimensions_value(dimensions: &BTreeMap<String, String>) -> Value {
    Value::List(
        dimensions
            .iter()
            .map(|(k, v)| Value::map([("Name", Value::str(k)), ("Value", Value::str(v))]))
            .collect(),
    )
}

/// Checks a statistic and a period given by a client.
pub(crate) fn statistic_and_period(
    r: &Reader<'_>,
    stat: &str,
    period: i64,
) -> Result<(Statistic, u32), AwsError> {
    let statistic = Statistic::parse(stat)?;
    let period_secs = u32::try_from(period)
        .map_err(|_| r.invalid(format!("The period {period} must be positive.")))?;
    publish::validate_period(period_secs)?;
    Ok((statistic, period_secs))
}

/// The datapoints of `stat` for the wall periods whose start lies in
/// `[start_ms, end_ms)` (the start rounded down to the period), as visible
/// at wall time `as_of_ms`, oldest first, stamped with wall times.
///
/// A period is visible once its model end plus the publication delay has
/// passed in model time, and only when every model second in it has been
/// stepped; a period with no published sample is absent.
pub(crate) fn datapoints(
    world: &World,
    clock: &Clock,
    stat: &MetricStat,
    start_ms: i64,
    end_ms: i64,
    as_of_ms: i64,
) -> Vec<Datapoint> {
    let Some((_, app, kind)) =
        world.publisher(&stat.namespace, &stat.metric_name, &stat.dimensions)
    else {
        return Vec::new();
    };
    let (history, params) = (app.history(), app.params());
    let period_ms = i64::from(stat.period_secs.max(1)) * 1000;
    let delay_ms = i64::from(params.metric_delay_secs) * 1000;
    let origin = clock.origin_ms;
    let as_of_model = clock.to_model_ms(as_of_ms);
    let steps = history.len() as i64;
    // The past the scenario publishes, if any.
    let mut out = app.past_datapoints(
        kind,
        stat.statistic,
        period_ms,
        (start_ms, end_ms),
        as_of_model,
        clock,
    );
    let mut buffer = Vec::new();
    // Periods wholly before step 0 hold nothing else: skip them unvisited.
    let mut period_start =
        (start_ms.div_euclid(period_ms) * period_ms).max(origin.div_euclid(period_ms) * period_ms);
    while period_start < end_ms {
        // A range at the end of what i64 milliseconds hold has no period
        // past it.
        let Some(period_end) = period_start.checked_add(period_ms) else {
            break;
        };
        let (model_start, model_end) = (
            clock.to_model_ms(period_start),
            clock.to_model_ms(period_end),
        );
        if model_end.saturating_add(delay_ms) > as_of_model {
            break;
        }
        let held = clock.steps(model_start..model_end);
        if held.end > steps {
            break;
        }
        if let Some(value) =
            publish::period_value(history, params, kind, stat.statistic, held, &mut buffer)
        {
            out.push(Datapoint {
                timestamp_ms: period_start,
                value,
            });
        }
        period_start = period_end;
    }
    out
}

/// One MetricDataQuery as read.
struct Query {
    id: String,
    label: String,
    what: What,
    /// Whether the answer holds this query (`ReturnData`, default true).
    returned: bool,
}

/// What a query reads.
enum What {
    /// A metric, a statistic, a period.
    Stat(MetricStat),
    /// Metric math over other queries of the request (see
    /// [`crate::metrics::math`] for the supported subset).
    Expression {
        expr: crate::metrics::math::Expr,
        period_secs: u32,
    },
}

fn valid_query_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_queries(r: &Reader<'_>) -> Result<Vec<Query>, AwsError> {
    let items = r.list("MetricDataQueries")?;
    if r.opt("MetricDataQueries").is_none() {
        return Err(AwsError::new(
            CODES.missing,
            "The parameter MetricDataQueries is required.",
        ));
    }
    if items.len() > MAX_QUERIES {
        return Err(r.invalid(format!(
            "GetMetricData takes at most {MAX_QUERIES} queries; {} were given.",
            items.len()
        )));
    }
    let mut queries = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for item in items {
        let q = r.item(item, "MetricDataQueries.")?;
        let id = q.str("Id")?;
        if !valid_query_id(id) {
            return Err(r.invalid(format!(
                "The query id {id:?} must start with a lower-case letter and hold only letters, digits and underscores."
            )));
        }
        if !ids.insert(id.to_owned()) {
            return Err(r.invalid(format!("The query id {id} is used twice.")));
        }
        let returned = q.opt_bool("ReturnData")?.unwrap_or(true);
        if let Some(text) = q.opt_str("Expression")? {
            let expr = crate::metrics::math::parse(text).map_err(|error| {
                r.invalid(format!(
                    "Query {id}: the expression {text:?} is not valid {error}."
                ))
            })?;
            let period_secs = match q.opt_i64("Period")? {
                Some(period) => statistic_and_period(r, "Average", period)?.1,
                None => 60,
            };
            queries.push(Query {
                id: id.to_owned(),
                label: q.opt_str("Label")?.unwrap_or(id).to_owned(),
                what: What::Expression { expr, period_secs },
                returned,
            });
            continue;
        }
        let ms = q.structure("MetricStat", "MetricStat.")?;
        let metric = ms.structure("Metric", "MetricStat.Metric.")?;
        let (statistic, period_secs) = statistic_and_period(r, ms.str("Stat")?, ms.i64("Period")?)?;
        let metric_name = metric.str("MetricName")?.to_owned();
        queries.push(Query {
            id: id.to_owned(),
            label: q.opt_str("Label")?.unwrap_or(&metric_name).to_owned(),
            what: What::Stat(MetricStat {
                namespace: metric.str("Namespace")?.to_owned(),
                metric_name,
                dimensions: read_dimensions(&metric, "Dimensions")?,
                statistic,
                period_secs,
            }),
            returned,
        });
    }
    // An expression reads MetricStat queries of the same request only.
    for query in &queries {
        let What::Expression { expr, .. } = &query.what else {
            continue;
        };
        for input in expr.ids() {
            let found = queries
                .iter()
                .any(|q| q.id == input && matches!(q.what, What::Stat(_)));
            if !found {
                return Err(r.invalid(format!(
                    "Query {}: the expression reads {input:?}, which is not a MetricStat query of this request.",
                    query.id
                )));
            }
        }
    }
    if !queries.is_empty() && !queries.iter().any(|q| q.returned) {
        return Err(r.invalid("At least one query must have ReturnData set to true."));
    }
    Ok(queries)
}

/// A GetMetricData NextToken: the wall time the first page was answered
/// at (so later pages see the same datapoints) and how many datapoints
/// earlier pages held.
fn parse_token(token: &str, now_ms: i64) -> Option<(i64, usize)> {
    let (as_of, offset) = token.split_once('.')?;
    let as_of: i64 = as_of.parse().ok()?;
    let offset: usize = offset.parse().ok()?;
    (as_of <= now_ms).then_some((as_of, offset))
}

/// GetMetricData.
pub(crate) fn get_metric_data(core: &Core, input: &Value, now_ms: i64) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let queries = read_queries(&r)?;
    let start_ms = r.timestamp_ms("StartTime")?;
    let end_ms = r.timestamp_ms("EndTime")?;
    if start_ms >= end_ms {
        return Err(r.invalid("The parameter StartTime must be less than the parameter EndTime."));
    }
    for query in &queries {
        let period_secs = match &query.what {
            What::Stat(stat) => stat.period_secs,
            What::Expression { period_secs, .. } => *period_secs,
        };
        let period_ms = i128::from(period_secs.max(1)) * 1000;
        let periods = (i128::from(end_ms) - i128::from(start_ms) + period_ms - 1) / period_ms;
        if periods > i128::from(MAX_PERIODS_PER_QUERY) {
            return Err(r.invalid(format!(
                "Query {}: StartTime to EndTime holds {periods} periods of {period_secs} s; \
                 the emulator answers at most {MAX_PERIODS_PER_QUERY} periods a query \
                 (CloudWatch's datapoints in a whole call): narrow the range or lengthen the period.",
                query.id
            )));
        }
    }
    let ascending = match r.opt_str("ScanBy")? {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => {
            return Err(r.invalid(format!(
                "ScanBy {other:?} must be TimestampDescending or TimestampAscending."
            )));
        }
    };
    // A request with metric math is not paged: one answer of at most
    // MaxDatapoints (CloudWatch's 100,800 by default), whatever the
    // emulator's page size for the others.
    let has_math = queries
        .iter()
        .any(|q| matches!(q.what, What::Expression { .. }));
    let page = match r.opt_i64("MaxDatapoints")? {
        Some(n) if n <= 0 => return Err(r.invalid("MaxDatapoints must be positive.")),
        Some(n) if has_math => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(core.page_size),
        None if has_math => MAX_PERIODS_PER_QUERY as usize,
        None => core.page_size,
    };
    let (as_of, offset) = match r.opt_str("NextToken")? {
        None => (now_ms, 0),
        Some(token) => parse_token(token, now_ms).ok_or_else(|| {
            AwsError::new(
                "InvalidNextToken",
                "The NextToken is not one this service gave.",
            )
        })?,
    };
    let stats: BTreeMap<&str, Vec<Datapoint>> = queries
        .iter()
        .filter_map(|q| match &q.what {
            What::Stat(stat) => Some((
                q.id.as_str(),
                datapoints(&core.world, &core.clock, stat, start_ms, end_ms, as_of),
            )),
            What::Expression { .. } => None,
        })
        .collect();
    let queries: Vec<&Query> = queries.iter().filter(|q| q.returned).collect();
    let mut series: Vec<Vec<Datapoint>> = Vec::with_capacity(queries.len());
    for q in &queries {
        let mut points = match &q.what {
            What::Stat(_) => stats.get(q.id.as_str()).cloned().unwrap_or_default(),
            What::Expression { expr, period_secs } => {
                let grid = crate::metrics::math::Grid {
                    start_ms,
                    end_ms,
                    period_secs: *period_secs,
                };
                crate::metrics::math::evaluate(expr, &|id| stats.get(id).cloned(), grid)
                    .map_err(|error| r.invalid(format!("Query {}: {}.", q.id, error.message)))?
            }
        };
        if !ascending {
            points.reverse();
        }
        series.push(points);
    }
    let total: usize = series.iter().map(Vec::len).sum();
    if offset > total || (offset == total && offset > 0) {
        return Err(AwsError::new(
            "InvalidNextToken",
            "The NextToken is not one this service gave.",
        ));
    }
    let page_end = offset.saturating_add(page).min(total);
    // The datapoints of every query laid end to end, in query order: a page
    // is one slice of that sequence.
    let mut before = 0;
    let mut results = Vec::with_capacity(queries.len());
    for (query, points) in queries.iter().zip(&series) {
        let from = offset.clamp(before, before + points.len()) - before;
        let to = page_end.clamp(before, before + points.len()) - before;
        let shown = &points[from..to];
        let status = if to < points.len() {
            "PartialData"
        } else {
            "Complete"
        };
        results.push(Value::map([
            ("Id", Value::str(&query.id)),
            ("Label", Value::str(&query.label)),
            (
                "Timestamps",
                Value::List(
                    shown
                        .iter()
                        .map(|p| Value::timestamp_ms(p.timestamp_ms))
                        .collect(),
                ),
            ),
            (
                "Values",
                Value::List(shown.iter().map(|p| Value::Float(p.value)).collect()),
            ),
            ("StatusCode", Value::str(status)),
        ]));
        before += points.len();
    }
    let mut output = Value::map([
        ("MetricDataResults", Value::List(results)),
        ("Messages", Value::List(Vec::new())),
    ]);
    // CloudWatch returns no NextToken for a request that performs metric
    // math: what does not fit in the first page is left out (PartialData).
    if page_end < total && !has_math {
        output.insert("NextToken", Value::Str(format!("{as_of}.{page_end}")));
    }
    Ok(output)
}

/// ListMetrics: the metrics the model publishes, filtered by namespace,
/// metric name and dimensions (a name alone, or a name and a value).
/// Where a listing resumes: the `NextToken` of a list operation is the
/// offset of the next item, as this emulator handed it out; anything else
/// is CloudWatch's InvalidNextToken.
pub(crate) fn page_offset(r: &Reader<'_>, len: usize) -> Result<usize, AwsError> {
    match r.opt_str("NextToken")? {
        None => Ok(0),
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|o| *o > 0 && *o < len)
            .ok_or_else(|| {
                AwsError::new(
                    "InvalidNextToken",
                    "The NextToken is not one this service gave.",
                )
            }),
    }
}

pub(crate) fn list_metrics(core: &Core, input: &Value) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let namespace = r.opt_str("Namespace")?;
    let metric_name = r.opt_str("MetricName")?;
    let mut filters = Vec::new();
    for item in r.list("Dimensions")? {
        let d = r.item(item, "Dimensions.")?;
        filters.push((
            d.str("Name")?.to_owned(),
            d.opt_str("Value")?.map(str::to_owned),
        ));
    }
    let matching: Vec<_> = core
        .world
        .list_metrics()
        .into_iter()
        .filter(|m| m.matches(namespace, metric_name, &filters))
        .collect();
    let offset = page_offset(&r, matching.len())?;
    let end = (offset + LIST_METRICS_PAGE).min(matching.len());
    let metrics = matching[offset..end]
        .iter()
        .map(|m| {
            Value::map([
                ("Namespace", Value::str(&m.namespace)),
                ("MetricName", Value::str(&m.metric_name)),
                ("Dimensions", dimensions_value(&m.dimensions)),
            ])
        })
        .collect();
    let mut output = Value::map([("Metrics", Value::List(metrics))]);
    if end < matching.len() {
        output.insert("NextToken", Value::Str(end.to_string()));
    }
    Ok(output)
}
