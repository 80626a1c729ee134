//! Writing to the agent's log.
//!
//! Lines are tagged by the agent with the plugin and the application, and may
//! be rate-limited, so log what explains a decision, not every datapoint.
//! The macros take `format!` arguments:
//!
//! ```
//! flinkscale_plugin::log::info!("scale-out alarm is {}", "ALARM");
//! ```
//!
//! Outside WebAssembly (a plugin's native unit tests) lines go to stderr.

pub use crate::__bindings::policy::flinkscale::plugin::host::Level;

/// Writes `message` to the agent's log at `level`.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::policy::flinkscale::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Writes `message` at [`Level::Trace`].
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Writes `message` at [`Level::Debug`].
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Writes `message` at [`Level::Info`].
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Writes `message` at [`Level::Warn`].
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Writes `message` at [`Level::Error`].
pub fn error(message: &str) {
    write(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write($crate::log::Level::$level, &::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_trace {
    ($($arg:tt)+) => { $crate::__flinkscale_log!(Trace, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_debug {
    ($($arg:tt)+) => { $crate::__flinkscale_log!(Debug, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_info {
    ($($arg:tt)+) => { $crate::__flinkscale_log!(Info, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_warn {
    ($($arg:tt)+) => { $crate::__flinkscale_log!(Warn, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flinkscale_error {
    ($($arg:tt)+) => { $crate::__flinkscale_log!(Error, $($arg)+) };
}

/// Logs a `format!` message at [`Level::Trace`].
#[doc(inline)]
pub use __flinkscale_trace as trace;

/// Logs a `format!` message at [`Level::Debug`].
#[doc(inline)]
pub use __flinkscale_debug as debug;

/// Logs a `format!` message at [`Level::Info`].
#[doc(inline)]
pub use __flinkscale_info as info;

/// Logs a `format!` message at [`Level::Warn`].
#[doc(inline)]
pub use __flinkscale_warn as warn;

/// Logs a `format!` message at [`Level::Error`].
#[doc(inline)]
pub use __flinkscale_error as error;
