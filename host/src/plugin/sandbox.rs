//! What one plugin store holds: an empty WASI context (with stopped clocks
//! and a random source seeded from the plugin's own bytes), a resource limiter
//! (linear memories and tables under one byte cap, and caps on how many
//! instances, tables and memories) that remembers it refused, and the
//! plugin's log (the `host.log` import plus
//! the guest's stdout and stderr), bounded per call and tagged with the
//! plugin and the application, its `log` lines read in the application's
//! unit.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::validate::sanitize_text;
use crate::target::Words;

/// Longest log line kept from a plugin, in bytes; the rest is cut.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 1024;
/// Most lines one call may log (host `log` and stdout/stderr together); the
/// rest are counted and reported once at the end of the call.
pub(crate) const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// Most table elements one table may have; generous for any real plugin
/// (a Rust plugin's function table holds a few hundred), small enough that
/// one table cannot be a bomb on its own. Every element is also counted
/// against the memory cap (see [`TABLE_ELEMENT_BYTES`]).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// What wasmtime spends per table element: "each table element requires a
/// pointer's worth of space" (`ResourceLimiter::table_growing`).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Most core instances, tables and memories one plugin store may create.
/// A Rust plugin (wasm32-wasip2) has 3 core instances, 2 tables and 1
/// memory. The caps are generous because components from other languages
/// are built differently: componentize-py links CPython, its libc and the
/// runtime as shared libraries, a core instance each plus the WASI adapter
/// and shims (a few dozen), with a few tables and memories; ComponentizeJS
/// (StarlingMonkey) is fewer. What these objects cost in memory is already
/// capped by `memory_limit_bytes` (tables and memories alike); the counts
/// bound the per-object bookkeeping wasmtime keeps beside them.
pub(crate) const MAX_INSTANCES: usize = 100;
/// See [`MAX_INSTANCES`].
pub(crate) const MAX_TABLES: usize = 100;
/// See [`MAX_INSTANCES`].
pub(crate) const MAX_MEMORIES: usize = 10;

/// The data of one plugin store.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap, consulted by wasmtime on every growth.
    pub(crate) limiter: Limiter,
    /// Where the plugin's log lines go (the `host.log` import of every
    /// contract version writes here).
    pub(crate) log: Arc<GuestLog>,
}

/// The most host resources (WASI streams, pollables, ...) one plugin
/// instance may hold at once. Each lives in the host's memory, outside
/// `plugin_memory_limit_bytes`: wasmtime's default (a million) let a plugin
/// that asks for `get-stdout` in a loop hold 100 MB or more of the
/// agent's. A plugin holds a handful; a call past the cap fails.
pub(crate) const MAX_HOST_RESOURCES: usize = 10_000;

/// The most random bytes one `wasi:random` call may ask for: the host
/// allocates them outside the memory cap, and wasmtime's default (64 MiB)
/// made each such call a host allocation of 64 MiB. A call past it traps.
pub(crate) const MAX_RANDOM_BYTES: u64 = 64 * 1024;

impl State {
    /// A store state with an empty WASI context: no preopened directories,
    /// no environment, no arguments, no sockets, clocks that stand still
    /// ([`Stopped`]), randomness drawn from `seed` ([`Seeded`]) at most
    /// [`MAX_RANDOM_BYTES`] a call, stdin closed, stdout and stderr to the
    /// agent's log, and at most [`MAX_HOST_RESOURCES`] host resources.
    pub(crate) fn new(memory_limit_bytes: u64, log: Arc<GuestLog>, seed: &Seed) -> Self {
        let wasi = WasiCtxBuilder::new()
            .wall_clock(Stopped)
            .monotonic_clock(Stopped)
            .secure_random(seed.rng(b"random"))
            .insecure_random(seed.rng(b"insecure"))
            .insecure_random_seed(seed.insecure_seed())
            .stdout(LogStream {
                log: log.clone(),
                stream: Stream::Stdout,
            })
            .stderr(LogStream {
                log: log.clone(),
                stream: Stream::Stderr,
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        Self {
            wasi,
            table,
            limiter: Limiter::new(memory_limit_bytes),
            log,
        }
    }
}

/// The clocks a plugin sees: the wall clock reads the Unix epoch and the
/// monotonic clock stands at zero. A plugin's only time is the
/// evaluation's `now_ms` (the contract's), so that a decision depends on
/// what it is given and never on when or how fast it runs: the same in
/// the agent and in a simulation, whose clock is virtual. Common
/// toolchains import the clocks (a Rust `std` component does), so they are
/// linked, and stopped; waiting on them traps (`forbid_waiting` in the
/// engine).
struct Stopped;

impl HostWallClock for Stopped {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Stopped {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Where a plugin's randomness comes from: the sha256 of its component,
/// so that every instance of the same file draws the same bytes, run after
/// run, in the agent and in a simulation (a Rust plugin's `HashMap` order,
/// or a policy that samples, repeats itself decision for decision), and a
/// new file draws others. WASI's default is the host's own randomness,
/// which made two runs of one simulation differ. Repeatable randomness is
/// the contract, not secrecy: a plugin has nothing to keep secret from its
/// operator, who can read the file and so the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seed([u8; 32]);

impl Seed {
    /// The seed of the component whose wasm has sha256 `digest`.
    pub(crate) fn of_component(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The sha256 of the wasm it is the seed of: the bytes compiled.
    pub(crate) fn component_sha256(&self) -> [u8; 32] {
        self.0
    }

    /// A generator for one WASI interface, named by `purpose`, so that
    /// the secure and the insecure interfaces do not repeat each other.
    fn rng(&self, purpose: &[u8]) -> StdRng {
        StdRng::from_seed(self.derive(purpose))
    }

    /// What `wasi:random/insecure-seed` answers (the seed of hash maps'
    /// keys in some toolchains).
    fn insecure_seed(&self) -> u128 {
        let derived = self.derive(b"insecure-seed");
        let mut half = [0u8; 16];
        half.copy_from_slice(&derived[..16]);
        u128::from_le_bytes(half)
    }

    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"flinkscale plugin randomness\0");
        hasher.update(purpose);
        hasher.update(self.0);
        hasher.finalize().into()
    }
}

impl State {
    /// The store's resources (streams, pollables, errors).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps what a store holds in memory, linear memories and tables together
/// (so a component with many memories, tables or instances gets no more
/// than one with one of each), caps how many instances, tables and memories
/// it may create, and remembers that it refused a growth, so that the
/// resulting trap is reported as out-of-memory rather than as a plain trap.
pub(crate) struct Limiter {
    limit: usize,
    /// Bytes of linear memory and of table elements, all instances together.
    used: usize,
    /// Set when a growth was refused or failed.
    pub(crate) refused: bool,
}

impl Limiter {
    fn new(limit_bytes: u64) -> Self {
        Self {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            used: 0,
            refused: false,
        }
    }

    /// Bytes of linear memory and of table elements the store holds now,
    /// all instances together: its peak, as neither ever shrinks.
    pub(crate) fn used(&self) -> u64 {
        u64::try_from(self.used).unwrap_or(u64::MAX)
    }

    /// Accounts a growth from `current` to `desired` bytes of one memory or
    /// table, or refuses it (an error, which traps at once).
    fn grow(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let used = self.used.saturating_sub(current).saturating_add(desired);
        if used > self.limit {
            self.refused = true;
            // An error (not `Ok(false)`) makes the growth trap at once, as
            // `StoreLimits::trap_on_grow_failure` does: a guest allocator
            // that handles a failed grow gracefully would otherwise keep
            // running and report something misleading.
            wasmtime::bail!(
                "memory limit of {} bytes reached growing a {what} (memories and tables would hold {used} bytes)",
                self.limit
            );
        }
        self.used = used;
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            self.refused = true;
            wasmtime::bail!("memory growth to {desired} bytes is past its own maximum");
        }
        self.grow("memory", current, desired)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        Err(error.context("memory growth failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|max| desired > max) {
            self.refused = true;
            wasmtime::bail!(
                "table limit of {MAX_TABLE_ELEMENTS} elements reached (wanted {desired})"
            );
        }
        self.grow(
            "table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        Err(error.context("table growth failed"))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The `source` of a line the plugin logged through the contract's `log`
/// import (the others are its standard streams, [`Stream::name`]).
pub(crate) const LOG_SOURCE: &str = "log";

/// Which standard stream a line came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// The log of one plugin instance: tags lines with the plugin and the
/// application, cuts long lines, and stops after
/// [`MAX_LOG_LINES_PER_CALL`] lines per call so that a chatty or hostile
/// plugin cannot flood the agent's log.
///
/// What the plugin logs through the contract's `log` import is read in
/// the application's unit ([`Words::plugin_text`], as its decision's
/// reason is): on a Flink job, `4 KPU` reads `parallelism 4`. Its stdout
/// and stderr are left as written: they are a developer's prints and a
/// trap's last words (a panic message, a traceback quoting the code),
/// whose text is evidence, not a message to the user.
pub(crate) struct GuestLog {
    state: Mutex<LogState>,
}

struct LogState {
    name: String,
    version: String,
    application: String,
    /// The application's words, in which `log` lines are read.
    words: Words,
    lines_left: u32,
    suppressed: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The last [`STDERR_TAIL_LINES`] non-blank stderr lines of the call
    /// (logged or suppressed alike), until the next call starts.
    stderr_tail: std::collections::VecDeque<String>,
}

/// How many of a call's last stderr lines [`GuestLog::stderr_tail`] keeps:
/// enough for a Rust panic's location and message.
const STDERR_TAIL_LINES: usize = 4;

impl GuestLog {
    /// A log for `name` (until the plugin tells its own) serving
    /// `application`, which speaks `words`.
    pub(crate) fn new(name: &str, application: &str, words: Words) -> Self {
        Self {
            state: Mutex::new(LogState {
                name: name.to_owned(),
                version: "?".to_owned(),
                application: application.to_owned(),
                words,
                lines_left: MAX_LOG_LINES_PER_CALL,
                suppressed: 0,
                stdout: Vec::new(),
                stderr: Vec::new(),
                stderr_tail: std::collections::VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while logging leaves nothing half-updated that matters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The words of the application served: what the plugin says to the
    /// user (its `log` lines, its refusal of its params) is read in them.
    pub(crate) fn words(&self) -> Words {
        self.lock().words
    }

    /// Tags further lines with the plugin's own name and version.
    pub(crate) fn set_identity(&self, name: &str, version: &str) {
        let mut state = self.lock();
        state.name = name.to_owned();
        state.version = version.to_owned();
    }

    /// Starts a call: the line budget is per call.
    pub(crate) fn begin_call(&self) {
        let mut state = self.lock();
        state.lines_left = MAX_LOG_LINES_PER_CALL;
        state.suppressed = 0;
        state.stderr_tail.clear();
    }

    /// The last call's last few non-blank stderr lines, oldest first: what
    /// a guest said before it trapped (a Rust panic's message).
    pub(crate) fn stderr_tail(&self) -> Vec<String> {
        self.lock().stderr_tail.iter().cloned().collect()
    }

    /// Ends a call: writes out unterminated stdout/stderr text and says how
    /// many lines were dropped.
    pub(crate) fn end_call(&self) {
        let mut state = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(state.buffer(stream));
            if !pending.is_empty() {
                state.emit(stream.level(), stream.name(), &pending);
            }
        }
        if state.suppressed > 0 {
            tracing::warn!(
                message = "Plugin log lines suppressed.",
                plugin = %state.name,
                plugin_version = %state.version,
                application = %state.application,
                suppressed = state.suppressed,
                limit_per_call = MAX_LOG_LINES_PER_CALL,
            );
            state.suppressed = 0;
        }
    }

    /// Logs one line from `source` (`log`, `stdout` or `stderr`).
    pub(crate) fn line(&self, level: tracing::Level, source: &'static str, text: &[u8]) {
        self.lock().emit(level, source, text);
    }

    /// Appends guest output to a stream's buffer, logging each complete
    /// line (and any line grown past the length cap).
    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.lock();
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(newline);
            let buffer = state.buffer(stream);
            buffer.extend_from_slice(line);
            let text = std::mem::take(buffer);
            state.emit(stream.level(), stream.name(), &text);
            rest = &tail[1..];
        }
        let buffer = state.buffer(stream);
        let room = (MAX_LOG_LINE_BYTES + 1).saturating_sub(buffer.len());
        buffer.extend_from_slice(&rest[..rest.len().min(room)]);
        if buffer.len() > MAX_LOG_LINE_BYTES {
            let text = std::mem::take(buffer);
            state.emit(stream.level(), stream.name(), &text);
        }
    }
}

impl LogState {
    fn buffer(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn emit(&mut self, level: tracing::Level, source: &'static str, text: &[u8]) {
        // A blank line says nothing (Rust's panic message starts with one,
        // on stderr): not logged, and not counted against the budget.
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if source == Stream::Stderr.name() {
            if self.stderr_tail.len() == STDERR_TAIL_LINES {
                self.stderr_tail.pop_front();
            }
            self.stderr_tail.push_back(sanitize_text(
                &String::from_utf8_lossy(text),
                MAX_LOG_LINE_BYTES,
            ));
        }
        if self.lines_left == 0 {
            self.suppressed = self.suppressed.saturating_add(1);
            return;
        }
        self.lines_left -= 1;
        let raw = String::from_utf8_lossy(text);
        let text = if source == LOG_SOURCE {
            sanitize_text(&self.words.plugin_text(&raw), MAX_LOG_LINE_BYTES)
        } else {
            sanitize_text(&raw, MAX_LOG_LINE_BYTES)
        };
        let (plugin, version) = (&self.name, &self.version);
        // None outside an application (`plugin check`): the field is left
        // out rather than written empty.
        let application = Some(self.application.as_str())
            .filter(|a| !a.is_empty())
            .map(tracing::field::display);
        // `tracing` needs the level at compile time, hence one call per level.
        macro_rules! emit {
            ($macro:ident) => {
                tracing::$macro!(
                    target: "flinkscale::plugin::guest",
                    plugin = %plugin,
                    plugin_version = %version,
                    application,
                    source,
                    "{text}"
                )
            };
        }
        match level {
            tracing::Level::TRACE => emit!(trace),
            tracing::Level::DEBUG => emit!(debug),
            tracing::Level::INFO => emit!(info),
            tracing::Level::WARN => emit!(warn),
            _ => emit!(error),
        }
    }
}

impl Stream {
    fn level(self) -> tracing::Level {
        match self {
            Stream::Stdout => tracing::Level::INFO,
            Stream::Stderr => tracing::Level::WARN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A guest's stdout or stderr, written line by line to its [`GuestLog`].
#[derive(Clone)]
struct LogStream {
    log: Arc<GuestLog>,
    stream: Stream,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

/// The most a guest may write to its stdout or stderr in one call (what
/// `check-write` permits): the host's work per call, which no epoch
/// deadline can interrupt, stays small however the guest writes.
const MAX_WRITE_BYTES: usize = 64 * 1024;

impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        // WASI: a write past what `check-write` permitted traps. Taken
        // whole, one call could hand the host megabytes to split into
        // lines, past the call's deadline.
        if bytes.len() > MAX_WRITE_BYTES {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "the plugin wrote {} bytes to its {} in one call, past the {MAX_WRITE_BYTES} \
                 that check-write permits",
                bytes.len(),
                self.stream.name()
            )));
        }
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: writing only appends to a bounded buffer.
        Ok(MAX_WRITE_BYTES)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // A partial write, as `AsyncWrite` allows: the rest comes in
        // further calls, each as bounded as a WASI write.
        let taken = &buf[..buf.len().min(MAX_WRITE_BYTES)];
        self.log.write(self.stream, taken);
        Poll::Ready(Ok(taken.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest's write to stdout or stderr past what `check-write`
    /// permits traps, as WASI says, instead of handing the host megabytes
    /// to split into lines in one call no deadline interrupts; one within
    /// it is logged. The host's own async writes are taken in part.
    #[test]
    fn a_guest_write_past_check_write_traps_and_one_within_it_is_taken() {
        let log = Arc::new(GuestLog::new("p", "app", Words::Msf));
        let mut stream = LogStream {
            log,
            stream: Stream::Stderr,
        };
        assert_eq!(stream.check_write().ok(), Some(MAX_WRITE_BYTES));
        let within = bytes::Bytes::from(vec![b'x'; MAX_WRITE_BYTES]);
        assert!(OutputStream::write(&mut stream, within).is_ok());
        let flood = bytes::Bytes::from(b"x\n".repeat(MAX_WRITE_BYTES));
        match OutputStream::write(&mut stream, flood) {
            Err(StreamError::Trap(error)) => assert!(
                error.to_string().contains(&format!(
                    "wrote {} bytes to its stderr in one call",
                    2 * MAX_WRITE_BYTES
                )),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
        let mut async_stream = std::pin::pin!(stream);
        let waker = std::task::Waker::noop();
        let written = tokio::io::AsyncWrite::poll_write(
            async_stream.as_mut(),
            &mut Context::from_waker(waker),
            &vec![b'y'; 3 * MAX_WRITE_BYTES],
        );
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == MAX_WRITE_BYTES));
    }

    /// The host resources one instance may hold are capped well below
    /// wasmtime's million: the push past the cap fails, and nothing more
    /// is held.
    #[test]
    fn a_plugin_instance_holds_a_bounded_number_of_host_resources() {
        let log = Arc::new(GuestLog::new("p", "app", Words::Msf));
        let mut state = State::new(1 << 20, log, &Seed::of_component([7; 32]));
        let table = state.table();
        for _ in 0..MAX_HOST_RESOURCES {
            table.push(()).expect("room under the cap");
        }
        assert!(table.push(()).is_err(), "the push past the cap fails");
    }
}
