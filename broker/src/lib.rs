//! Herald's broker: the HTTP ingress that accepts CloudEvents into a Broker's channel, the
//! data plane that runs Brokers and Triggers and applies changes at runtime, its admin API,
//! and the `serve` path that wires them together.

pub mod admin;
pub mod auth;
pub mod backends;
pub mod cli;
pub mod display;
pub mod header_limits;
pub mod heap;
pub mod ingress;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod listener;
pub mod plane;
pub mod send;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod transform_endpoint;
pub mod watch;

pub use serve::{RunningServer, ServeConfig, ServeError};
