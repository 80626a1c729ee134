//! Builders for a plugin's own unit tests: a series from `(timestamp_ms,
//! value)` pairs and a running application, so that each plugin's tests
//! write only what differs between their cases.

use crate::{AppStatus, Application, Datapoint, Series};

/// A series `id` of `namespace`'s metric of the same name, by `statistic`
/// over 60 s periods, with `points` as `(timestamp_ms, value)`.
pub fn series(namespace: &str, statistic: &str, id: &str, points: &[(i64, f64)]) -> Series {
    Series {
        id: id.to_owned(),
        namespace: namespace.to_owned(),
        metric_name: id.to_owned(),
        statistic: statistic.to_owned(),
        period_secs: 60,
        points: points
            .iter()
            .map(|&(timestamp_ms, value)| Datapoint {
                timestamp_ms,
                value,
            })
            .collect(),
    }
}

/// Application `orders`, RUNNING at `kpu` (one subtask per KPU) within
/// `[min_kpu, max_kpu]`, never rescaled.
pub fn application(kpu: u32, min_kpu: u32, max_kpu: u32) -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu,
        parallelism: kpu,
        parallelism_per_kpu: 1,
        min_kpu,
        max_kpu,
        version_id: 1,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}
