//! flinkscale: a scaling agent for Apache Flink applications.
//!
//! The data path reads top to bottom, one module per stage:
//! [`config`] (what the user wrote) -> [`metrics`] (collect) -> [`plugin`]
//! interpreters (interpret) -> [`alarm`] (evaluate) -> [`plugin`] policies
//! (decide) -> [`target`] (act, follow) -> [`telemetry`] and [`state`]
//! (record). The [`controller`] runs that loop for one application; [`cli`]
//! is the binary's front door.

pub mod agent;
pub mod alarm;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod demo;
pub mod emulator;
pub mod flink;
mod http;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod random;
#[cfg(test)]
mod scratch;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod target;
pub mod telemetry;
