//! Herald's broker: the HTTP ingress that accepts CloudEvents into a Broker's channel, and the
//! `serve` path that wires ingress, channels and the dispatcher together.

pub mod admin;
pub mod backends;
pub mod display;
pub mod ingress;
pub mod send;
pub mod serve;

pub use serve::{RunningServer, ServeConfig, ServeError};
