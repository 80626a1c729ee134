//! `flinkscale emulate`: Managed Service for Apache Flink and CloudWatch
//! played over HTTP on loopback, on top of the workload model ([`crate::sim`]).
//!
//! The emulator speaks the wire protocols the real clients speak:
//! kinesisanalyticsv2 over AWS JSON 1.1 (`kinesis`), CloudWatch over Smithy
//! RPC v2 CBOR (aws-sdk-cloudwatch) and over AWS JSON 1.0 (boto3)
//! (`cloudwatch`, `alarms`). Each operation is written once over a
//! protocol-neutral `value::Value`; the codecs (`cbor`, `json`) only
//! translate. A control API under `/_emulator/` (`control`) shows the call
//! log and the model's state, changes the load and injects faults
//! ([`faults`]).
//!
//! # Time
//!
//! The model may run `speed` times faster than the wall clock, but the
//! emulator shows everything in wall-clock time, so a client needs no clock
//! tricks: model time m and wall time w are related by
//! `m = origin + (w - origin) * speed`, `origin` being the emulator's start
//! ([`Clock`], the world's one time map, [`crate::sim::TimeMap`], which the
//! simulator uses at speed 1). Every request first advances the model to
//! the model second of now. A CloudWatch period of P wall seconds aggregates P x speed model
//! seconds; the publication delay and the UPDATING time shrink by the same
//! factor. With speed 1 the two clocks are the same.

mod alarms;
mod cbor;
mod cloudwatch;
mod control;
pub mod faults;
mod json;
mod kinesis;
mod server;
mod value;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::clock::system_ms;
use crate::sim::{ApiError, Scenario, ScenarioError, Scores, World};

pub use faults::FaultSpec;

/// The GetMetricData page size when none is given: small enough that a
/// client's NextToken handling is exercised by ordinary windows.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Where the emulated world comes from.
#[derive(Debug, Clone)]
pub enum ScenarioSource {
    /// A scenario file (and the traces it names).
    File(PathBuf),
    /// A scenario already loaded.
    Loaded(Box<Scenario>),
}

impl From<PathBuf> for ScenarioSource {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<Scenario> for ScenarioSource {
    fn from(scenario: Scenario) -> Self {
        Self::Loaded(Box::new(scenario))
    }
}

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The scenario it plays.
    pub scenario: ScenarioSource,
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How many times faster than the wall clock the model runs (> 0).
    pub speed: f64,
    /// The wall-clock time of the model's t = 0, milliseconds since the
    /// Unix epoch (rounded down to a whole second); `None` is the start of
    /// the emulator. A time in the past starts with that much history.
    pub start_epoch_ms: Option<i64>,
    /// How many datapoints a GetMetricData page holds at most.
    pub page_size: usize,
}

impl EmulatorOptions {
    /// Options for `scenario` on a free loopback port, in real time.
    pub fn new(scenario: impl Into<ScenarioSource>) -> Self {
        Self {
            scenario: scenario.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            speed: 1.0,
            start_epoch_ms: None,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// Why the emulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The scenario could not be loaded.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An option is out of range.
    #[error("invalid emulator option: {0}")]
    InvalidOptions(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The model refused (unknown application, bad load factor).
    #[error(transparent)]
    Model(#[from] ApiError),
    /// A fault specification is invalid.
    #[error("invalid fault: {0}")]
    Fault(String),
}

/// Maps wall-clock time to model time and back (see the module's "Time"):
/// the world's one time map, which the simulator uses at speed 1.
pub type Clock = crate::sim::TimeMap;

/// The wire protocol of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// AWS JSON 1.1 (kinesisanalyticsv2).
    #[serde(rename = "awsJson1_1")]
    AwsJson11,
    /// AWS JSON 1.0 (CloudWatch for boto3).
    #[serde(rename = "awsJson1_0")]
    AwsJson10,
    /// Smithy RPC v2 CBOR (CloudWatch for the Rust SDK).
    #[serde(rename = "rpcv2Cbor")]
    RpcV2Cbor,
}

/// The emulated service of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Service {
    /// Managed Service for Apache Flink.
    #[serde(rename = "kinesisanalyticsv2")]
    Kinesis,
    /// CloudWatch.
    #[serde(rename = "cloudwatch")]
    CloudWatch,
}

/// One AWS call the emulator received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// Its number, from 1, in arrival order.
    pub seq: u64,
    /// When it ran (took effect, or was refused), wall-clock ms since the
    /// Unix epoch. That is when it was answered, but for an after-effect
    /// fault with a delay, whose answer comes `delay_ms` later.
    pub wall_ms: i64,
    /// The model second at that time.
    pub model_secs: u64,
    /// Its wire protocol.
    pub protocol: Protocol,
    /// Its service.
    pub service: Service,
    /// The operation, e.g. `UpdateApplication`.
    pub operation: String,
    /// The application it concerns, if any (`ApplicationName`, or an
    /// `Application` dimension).
    pub application: Option<String>,
    /// The request's parameters, as JSON (timestamps as epoch seconds).
    pub params: serde_json::Value,
    /// `ok`, the error code answered, or `Drop` (no answer: the
    /// connection was closed).
    pub outcome: String,
    /// The HTTP status answered, 0 when the connection was dropped.
    pub http_status: u16,
    /// Whether the outcome was an injected fault.
    pub injected: bool,
    /// Whether the call changed the emulated state (an UpdateApplication
    /// that moved the version, an alarm put or deleted), whatever it
    /// answered: with an after-effect fault, a failed answer hides an
    /// effect that happened.
    pub took_effect: bool,
    /// The request's User-Agent header (the AWS SDK's names the caller's
    /// app, as CloudTrail's `userAgent` does), if it had one.
    pub user_agent: Option<String>,
    /// Whether the client had hung up before the call ran: a request held
    /// by a `lands_late` Delay that reached the service after its client
    /// gave up (its answer went nowhere).
    pub client_gone: bool,
}

/// One application as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSnapshot {
    /// The application's name.
    pub name: String,
    /// The model second it stands at.
    pub model_time_secs: u64,
    /// `RUNNING` or `UPDATING`.
    pub status: crate::target::AppStatus,
    /// The KPU in effect.
    pub kpu: u32,
    /// The parallelism in effect.
    pub parallelism: u32,
    /// The ParallelismPerKPU in effect.
    pub parallelism_per_kpu: u32,
    /// ApplicationVersionId.
    pub version_id: u64,
    /// The load factor applied to its trace.
    pub load_factor: f64,
    /// Input rate of the last second, records/s.
    pub lambda: f64,
    /// Capacity of the last second, records/s.
    pub capacity: f64,
    /// Backlog at the end of the last second, records.
    pub backlog: f64,
    /// FIFO lag at the end of the last second, seconds.
    pub lag_secs: f64,
    /// Successful UpdateApplication calls so far.
    pub updates: usize,
}

/// One alarm as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmSnapshot {
    /// AlarmName.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// When the state last changed, wall-clock ms.
    pub state_updated_ms: i64,
}

/// The emulator's state (`GET /_emulator/state`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmulatorState {
    /// Wall-clock now, ms since the Unix epoch.
    pub wall_ms: i64,
    /// Model now, ms since the Unix epoch.
    pub model_ms: i64,
    /// Model seconds per wall second.
    pub speed: f64,
    /// The scenario's name.
    pub scenario: String,
    /// Every application.
    pub applications: Vec<AppSnapshot>,
    /// Every alarm.
    pub alarms: Vec<AlarmSnapshot>,
    /// The faults in force.
    pub faults: Vec<FaultSpec>,
    /// AWS calls received so far.
    pub calls: u64,
    /// The run's scores so far.
    pub scores: Scores,
}

/// Everything the emulator knows, behind one lock: requests are short and
/// never wait while holding it.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) clock: Clock,
    pub(crate) world: World,
    pub(crate) alarms: alarms::Alarms,
    pub(crate) faults: faults::Faults,
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) page_size: usize,
}

impl Core {
    pub(crate) fn new(scenario: &Scenario, clock: Clock, page_size: usize) -> Self {
        Self {
            clock,
            world: World::from_scenario(scenario, clock.origin_ms),
            alarms: alarms::Alarms::default(),
            faults: faults::Faults::default(),
            calls: Vec::new(),
            page_size: page_size.max(1),
        }
    }

    /// Brings the model and the alarms up to wall time `now_ms`.
    pub(crate) fn sync(&mut self, now_ms: i64) {
        self.world.advance_to(self.clock.model_secs(now_ms));
        self.alarms.evaluate_until(&self.world, &self.clock, now_ms);
    }

    /// Runs one AWS operation at wall time `now_ms` (after [`Core::sync`]).
    pub(crate) fn call(
        &mut self,
        service: Service,
        operation: &str,
        input: &value::Value,
        now_ms: i64,
    ) -> Result<value::Value, value::AwsError> {
        match service {
            Service::Kinesis => kinesis::call(self, operation, input),
            Service::CloudWatch => match operation {
                "GetMetricData" => cloudwatch::get_metric_data(self, input, now_ms),
                "ListMetrics" => cloudwatch::list_metrics(self, input),
                "PutMetricAlarm" | "DescribeAlarms" | "DeleteAlarms" => {
                    alarms::call(self, operation, input, now_ms)
                }
                _ => Err(unknown_operation(operation)),
            },
        }
    }

    /// Adds a fault after checking it (an `application` it names must be
    /// one of the scenario's).
    pub(crate) fn add_fault(&mut self, spec: FaultSpec) -> Result<(), String> {
        let names: Vec<&str> = self
            .world
            .applications()
            .iter()
            .map(|app| app.name())
            .collect();
        self.faults.add(spec, &names)
    }

    /// Appends a call to the log and returns its number.
    pub(crate) fn record(
        &mut self,
        now_ms: i64,
        protocol: Protocol,
        service: Service,
        operation: &str,
        input: Option<&value::Value>,
        logged: server::Logged,
    ) -> u64 {
        let seq = self.calls.len() as u64 + 1;
        self.calls.push(CallRecord {
            seq,
            wall_ms: now_ms,
            model_secs: self.world.now_secs(),
            protocol,
            service,
            operation: operation.to_owned(),
            application: input.and_then(application_of),
            params: input.map_or(serde_json::Value::Null, value::Value::to_json),
            outcome: logged.outcome,
            http_status: logged.http_status,
            injected: logged.injected,
            took_effect: logged.took_effect,
            user_agent: logged.user_agent,
            client_gone: logged.client_gone,
        });
        seq
    }

    /// The state shown by the control API.
    pub(crate) fn snapshot(&self, now_ms: i64) -> EmulatorState {
        let applications = self
            .world
            .applications()
            .iter()
            .map(|app| {
                let view = app.view();
                let last = app.history().last();
                AppSnapshot {
                    name: view.name,
                    model_time_secs: app.now_secs(),
                    status: view.status,
                    kpu: view.kpu,
                    parallelism: view.parallelism,
                    parallelism_per_kpu: view.parallelism_per_kpu,
                    version_id: view.version_id,
                    load_factor: app.load_factor(),
                    lambda: last.map_or(0.0, |s| s.lambda),
                    capacity: last.map_or(0.0, |s| s.capacity),
                    backlog: last.map_or(0.0, |s| s.backlog),
                    lag_secs: last.map_or(0.0, |s| s.lag_secs),
                    updates: app.history().updates.len(),
                }
            })
            .collect();
        EmulatorState {
            wall_ms: now_ms,
            model_ms: self.world.now_ms(),
            speed: self.clock.speed,
            scenario: self.world.scenario_name().to_owned(),
            applications,
            alarms: self.alarms.snapshot(),
            faults: self.faults.list(),
            calls: self.calls.len() as u64,
            scores: self.world.scores(),
        }
    }
}

/// Every AWS operation the emulator answers: what a
/// fault may name, besides `*`.
pub const OPERATIONS: [&str; 8] = [
    "DescribeApplication",
    "UpdateApplication",
    "ListApplications",
    "GetMetricData",
    "ListMetrics",
    "PutMetricAlarm",
    "DescribeAlarms",
    "DeleteAlarms",
];

/// The answer to an operation the service does not have (or the emulator
/// does not play).
pub(crate) fn unknown_operation(operation: &str) -> value::AwsError {
    value::AwsError::new(
        "UnknownOperationException",
        format!("The emulator does not implement the operation {operation}."),
    )
}

/// Whether a successful call of `operation` changes the emulated state:
/// what the call log's `took_effect` counts.
pub(crate) fn changes_state(service: Service, operation: &str) -> bool {
    match service {
        Service::Kinesis => operation == "UpdateApplication",
        Service::CloudWatch => matches!(operation, "PutMetricAlarm" | "DeleteAlarms"),
    }
}

/// The application a request concerns: its `ApplicationName`, else the
/// value of the first `Application` dimension anywhere in it.
fn application_of(input: &value::Value) -> Option<String> {
    use value::Value;
    if let Some(name) = input.get("ApplicationName").and_then(Value::as_str) {
        return Some(name.to_owned());
    }
    match input {
        Value::Map(pairs) => {
            if input.get("Name").and_then(Value::as_str) == Some("Application")
                && let Some(v) = input.get("Value").and_then(Value::as_str)
            {
                return Some(v.to_owned());
            }
            pairs.iter().find_map(|(_, v)| application_of(v))
        }
        Value::List(items) => items.iter().find_map(application_of),
        _ => None,
    }
}

/// The state shared by the server's tasks and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    core: Mutex<Core>,
}

impl Shared {
    /// The core, synced to now. A panic while holding the lock cannot leave
    /// the model half-stepped in a way that matters more than stopping
    /// would, so a poisoned lock is taken over.
    pub(crate) fn lock_synced(&self) -> (MutexGuard<'_, Core>, i64) {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let now = system_ms();
        core.sync(now);
        (core, now)
    }
}

/// A running emulator. Dropping the handle stops the server as well;
/// [`EmulatorHandle::shutdown`] also waits for it to stop.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the AWS clients, `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The mapping between wall-clock and model time.
    pub fn clock(&self) -> Clock {
        self.shared.lock_synced().0.clock
    }

    /// Every AWS call received so far, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls_since(0)
    }

    /// The AWS calls numbered above `seq`, oldest first.
    pub fn calls_since(&self, seq: u64) -> Vec<CallRecord> {
        let (core, _) = self.shared.lock_synced();
        let from = usize::try_from(seq).unwrap_or(usize::MAX);
        core.calls
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// The state of the model, the alarms and the faults now.
    pub fn state(&self) -> EmulatorState {
        let (core, now) = self.shared.lock_synced();
        core.snapshot(now)
    }

    /// [`EmulatorHandle::state`] off the async runtime: bringing the model
    /// up to now steps it through every model second since it was last
    /// read (the whole history, at the first read), CPU work for the
    /// blocking pool, as the server's own handlers do.
    pub async fn state_off_runtime(&self) -> EmulatorState {
        let shared = self.shared.clone();
        let read = tokio::task::spawn_blocking(move || {
            let (core, now) = shared.lock_synced();
            core.snapshot(now)
        });
        match read.await {
            Ok(state) => state,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled (the runtime shuts down): read it here.
            Err(_) => self.state(),
        }
    }

    /// Runs `f` on the model, advanced to now.
    pub fn with_world<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        let (core, _) = self.shared.lock_synced();
        f(&core.world)
    }

    /// Changes an application's load factor from now on.
    pub fn set_load_factor(&self, application: &str, factor: f64) -> Result<(), EmulatorError> {
        let (mut core, _) = self.shared.lock_synced();
        core.world.set_load_factor(application, factor)?;
        Ok(())
    }

    /// Injects a fault.
    pub fn inject_fault(&self, fault: FaultSpec) -> Result<(), EmulatorError> {
        let (mut core, _) = self.shared.lock_synced();
        core.add_fault(fault).map_err(EmulatorError::Fault)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock_synced().0.faults.clear();
    }

    /// Stops accepting connections, lets the requests in flight finish, and
    /// waits for the server to stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The fastest an emulator may play its model: model seconds per wall
/// second.
pub const MAX_SPEED: f64 = 1.0e6;

/// Checks a speed (model seconds per wall second): above 0 and at most
/// [`MAX_SPEED`]; the error says what is valid.
pub fn check_speed(speed: f64) -> Result<(), String> {
    if speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED {
        Ok(())
    } else {
        Err(format!(
            "speed {speed} must be a number above 0 and at most {MAX_SPEED}"
        ))
    }
}

/// Loads the scenario, binds the listen address and starts serving in the
/// background on the current tokio runtime.
pub async fn start(options: EmulatorOptions) -> Result<EmulatorHandle, EmulatorError> {
    if let Err(error) = check_speed(options.speed) {
        return Err(EmulatorError::InvalidOptions(error));
    }
    if options.page_size == 0 {
        return Err(EmulatorError::InvalidOptions(
            "page_size must be at least 1".to_owned(),
        ));
    }
    let scenario = match options.scenario {
        ScenarioSource::File(path) => Scenario::load(&path)?,
        ScenarioSource::Loaded(scenario) => *scenario,
    };
    let origin_ms = options
        .start_epoch_ms
        .unwrap_or_else(system_ms)
        .div_euclid(1000)
        * 1000;
    let clock = Clock {
        origin_ms,
        speed: options.speed,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: options.listen,
            source,
        })?;
    let shared = Arc::new(Shared {
        core: Mutex::new(Core::new(&scenario, clock, options.page_size)),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, shared.clone(), shutdown_rx));
    info!(
        message = "Emulator listening.",
        %addr,
        scenario = %scenario.name,
        speed = options.speed
    );
    Ok(EmulatorHandle {
        addr,
        shared,
        shutdown,
        task,
    })
}

/// `flinkscale emulate`: starts the emulator, prints
/// `flinkscale emulator listening on http://ADDR` as one line on stdout
/// (for scripts and tests to read), and serves until Ctrl-C or SIGTERM.
pub async fn serve_until_signal(options: EmulatorOptions) -> Result<(), EmulatorError> {
    // Listening first: a signal during the start stops it too.
    let mut stops = crate::shutdown::Signals::listen();
    let handle = tokio::select! {
        handle = start(options) => handle?,
        () = stops.recv() => {
            info!(message = "Emulator stopped during start.");
            return Ok(());
        }
    };
    println!("flinkscale emulator listening on {}", handle.endpoint_url());
    if !handle.local_addr().ip().is_loopback() {
        tracing::warn!(
            message = "The emulator listens off loopback: it accepts any signature, and anyone who reaches it can change its load or inject faults through its control API.",
            address = %handle.local_addr(),
        );
    }
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    stops.recv().await;
    info!(message = "Emulator stopping.");
    handle.shutdown().await;
    Ok(())
}
