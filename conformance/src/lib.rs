//! `herald-conformance`: checks any broker's ingress and delivery against the Knative
//! data-plane contract (knative/specs `specs/eventing/data-plane.md`, with the delivery rules
//! of `control-plane.md`) and the CloudEvents HTTP binding and JSON format.
//!
//! It starts its own receiving sink on 127.0.0.1, has an [`adapter::Adapter`] create the
//! Triggers its checks need (Herald's uses the admin API; the checks never know which broker
//! they test), sends events in every shape the specs allow, and compares what the broker
//! answers and delivers with what was sent, on the wire ([`wire`]). Each check is named after
//! the spec section it comes from and is a MUST or a SHOULD ([`check`]).

pub mod adapter;
pub mod check;
mod checks;
pub mod cli;
mod ctx;
pub mod report;
pub mod sink;
pub mod suite;
pub mod wire;
