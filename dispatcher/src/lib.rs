//! The dispatcher: one consumer per [`Route`] (a Trigger, later a Subscription or a flow step)
//! reads a channel, applies the route's filter and delivers matching events with retries,
//! dead-lettering and reply handling.
//!
//! Data path, one module per step: [`consumer`] -> [`filter`] -> [`delivery`] (one attempt over
//! HTTP, one [`hop`] each) under [`retry`] (the DeliverySpec's policy) -> [`dead_letter`] or
//! [`reply`]. [`trace`] owns the spans and the W3C trace context they continue.

pub mod attributes;
pub mod cancellation;
pub mod client;
pub mod consumer;
pub mod dead_letter;
pub mod delivery;
pub mod engine;
pub mod fanout;
pub mod filter;
pub mod hop;
pub mod redact;
pub mod reply;
pub mod retry;
pub mod route;
pub mod trace;
pub mod transform;

pub use consumer::{ConsumerControl, RouteConsumer};
pub use engine::{Credentials, DeliveryEngine, Disposition, EngineConfig};
pub use fanout::{Fanout, FanoutStats};
pub use filter::{Filter, FilterError};
pub use retry::RetryPolicy;
pub use route::{ReplyTarget, Route, RouteError, RouteId};
