//! A self-managed Flink session cluster, scaled through its REST API (issue
//! #13, first slice; not yet selectable in the configuration).
//!
//! The "application" is a job name: a job restarted under a new id is found
//! again by name. Rescaling is in place with the adaptive scheduler:
//! `PUT /jobs/{id}/resource-requirements` listing every vertex with upper
//! bound = the new parallelism, after which Flink restarts the job's tasks at
//! it; [`ScalingTarget::describe`] reports `UPDATING` until every vertex runs
//! at the parallelism last asked for, so the controller's follow loop waits
//! it out as it waits out an MSF update.
//!
//! Flink has no version id to quote. The fence here is the parallelism: a
//! rescale is refused as a concurrent modification when the job no longer
//! runs at the parallelism the decision was made for (someone else changed
//! it, or the job restarted), and `version_id` is always 0. One KPU is one
//! unit of parallelism (`parallelism_per_kpu` = 1).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{AppState, AppStatus, ScalingTarget, TargetError};

/// Flink answers larger than this are refused rather than buffered.
const MAX_ANSWER: u64 = 8 << 20;

/// A Flink cluster reached at `http://host:port`.
#[derive(Debug, Clone)]
pub struct FlinkTarget {
    host_port: String,
    timeout: Duration,
}

impl FlinkTarget {
    /// A target for the REST API at `rest_url`, which must be
    /// `http://host:port` (TLS is not supported yet).
    pub fn new(rest_url: &str) -> Result<Self, TargetError> {
        let host_port = rest_url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|hp| !hp.is_empty() && !hp.contains('/'))
            .ok_or_else(|| {
                TargetError::Invalid(format!(
                    "rest_url {rest_url:?}: expected http://host:port (https is not supported yet)"
                ))
            })?;
        Ok(Self {
            host_port: host_port.to_owned(),
            timeout: Duration::from_secs(10),
        })
    }

    /// One HTTP/1.1 exchange; the status and the JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), TargetError> {
        let exchange = async {
            let mut stream = TcpStream::connect(&self.host_port).await?;
            let body = body.map(Value::to_string).unwrap_or_default();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                self.host_port,
                body.len()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let what = format!("{method} http://{}{path}", self.host_port);
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                TargetError::Transient(format!("{what}: no answer in {:?}", self.timeout))
            })?
            .map_err(|e| TargetError::Transient(format!("{what}: {e}")))?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, payload) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| TargetError::Transient(format!("{what}: truncated HTTP answer")))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TargetError::Transient(format!("{what}: no HTTP status line")))?;
        let json: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        match status {
            200..=299 => Ok((status, json)),
            404 => Err(TargetError::NotFound(format!("{what}: {json}"))),
            400..=499 => Err(TargetError::Invalid(format!("{what}: {status} {json}"))),
            _ => Err(TargetError::Transient(format!("{what}: {status} {json}"))),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, TargetError> {
        Ok(self.call("GET", path, None).await?.1)
    }

    /// The id of the newest job named `name` that has not reached a terminal
    /// state.
    async fn job_id(&self, name: &str) -> Result<String, TargetError> {
        let jobs = self.get("/jobs/overview").await?;
        jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["name"] == name)
            .filter(|j| {
                !matches!(
                    j["state"].as_str(),
                    Some("FINISHED" | "CANCELED" | "FAILED" | "SUSPENDED")
                )
            })
            .max_by_key(|j| j["start-time"].as_i64().unwrap_or(0))
            .and_then(|j| j["jid"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                TargetError::NotFound(format!(
                    "no running job named {name:?} at http://{}",
                    self.host_port
                ))
            })
    }
}

/// Maps a Flink job state onto the controller's statuses.
fn status_of(job_state: &str) -> AppStatus {
    match job_state {
        "RUNNING" => AppStatus::Running,
        "CREATED" | "INITIALIZING" | "RECONCILING" => AppStatus::Starting,
        "RESTARTING" => AppStatus::Updating,
        "CANCELLING" | "FAILING" => AppStatus::Stopping,
        _ => AppStatus::Unknown,
    }
}

#[async_trait]
impl ScalingTarget for FlinkTarget {
    async fn describe(&self, application: &str) -> Result<AppState, TargetError> {
        let id = self.job_id(application).await?;
        let job = self.get(&format!("/jobs/{id}")).await?;
        let requirements = self
            .get(&format!("/jobs/{id}/resource-requirements"))
            .await?;
        let vertices = job["vertices"].as_array().cloned().unwrap_or_default();
        let parallelism = vertices
            .iter()
            .filter_map(|v| v["parallelism"].as_u64())
            .max()
            .unwrap_or(0);
        // Settled: every vertex running, at its requirement's upper bound.
        let settled = vertices.iter().all(|v| {
            let upper = v["id"]
                .as_str()
                .and_then(|vid| requirements[vid]["parallelism"]["upperBound"].as_u64());
            v["status"] == "RUNNING" && upper.is_none_or(|u| v["parallelism"].as_u64() == Some(u))
        });
        let mut status = status_of(job["state"].as_str().unwrap_or(""));
        if status == AppStatus::Running && !settled {
            status = AppStatus::Updating;
        }
        Ok(AppState {
            status,
            parallelism: u32::try_from(parallelism).unwrap_or(u32::MAX),
            parallelism_per_kpu: 1,
            version_id: 0,
            autoscaling_enabled: false,
        })
    }

    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError> {
        if kpu == 0 {
            return Err(TargetError::Request(
                "parallelism 0: a Flink job needs at least 1".to_owned(),
            ));
        }
        let now = self.describe(application).await?;
        if now.status != AppStatus::Running {
            return Err(TargetError::ResourceInUse(format!(
                "job {application:?} is {} (a rescale needs RUNNING)",
                now.status
            )));
        }
        if now.parallelism != current.parallelism {
            return Err(TargetError::ConcurrentModification(format!(
                "job {application:?} runs at parallelism {}, the decision was made at {}",
                now.parallelism, current.parallelism
            )));
        }
        let id = self.job_id(application).await?;
        let path = format!("/jobs/{id}/resource-requirements");
        let vertices = self.get(&path).await?;
        let wanted: serde_json::Map<String, Value> = vertices
            .as_object()
            .into_iter()
            .flatten()
            .map(|(vid, _)| {
                let bounds = json!({"lowerBound": 1, "upperBound": kpu});
                (vid.clone(), json!({ "parallelism": bounds }))
            })
            .collect();
        if wanted.is_empty() {
            return Err(TargetError::Invalid(format!(
                "job {application:?} lists no vertices in {path} (is the adaptive scheduler on?)"
            )));
        }
        self.call("PUT", &path, Some(&Value::Object(wanted)))
            .await?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_url_must_be_plain_http_host_port() {
        assert!(FlinkTarget::new("http://localhost:8081").is_ok());
        assert!(FlinkTarget::new("http://localhost:8081/").is_ok());
        for bad in [
            "https://h:8081",
            "localhost:8081",
            "http://",
            "http://h:1/x",
        ] {
            let err = FlinkTarget::new(bad).expect_err(bad);
            assert!(
                err.to_string().contains("expected http://host:port"),
                "{err}"
            );
        }
    }
}
