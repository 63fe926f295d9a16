//! The checks, one module per area of the contract. Each module says which Triggers it needs
//! and runs against the [`Ctx`]; all modules run at once, on their own Triggers, event types
//! and sink paths, so none waits for another.

mod fidelity;
mod ingress;
mod reply;
mod retry;
mod routing;

use crate::adapter::{DeliverySpec, TriggerSpec};
use crate::check::Outcome;
use crate::ctx::Ctx;

pub use routing::broker_delivery;

/// Every Trigger the checks use.
pub fn triggers(ctx: &Ctx) -> Vec<TriggerSpec> {
    let mut all = fidelity::triggers(ctx);
    all.extend(reply::triggers(ctx));
    all.extend(retry::triggers(ctx));
    all.extend(routing::triggers(ctx));
    all
}

/// The Broker's default delivery options.
pub fn broker(ctx: &Ctx) -> DeliverySpec {
    broker_delivery(ctx)
}

/// Runs every check.
pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let (a, b, c, d, e) = futures::join!(
        ingress::run(ctx),
        fidelity::run(ctx),
        reply::run(ctx),
        retry::run(ctx),
        routing::run(ctx),
    );
    [a, b, c, d, e].into_iter().flatten().collect()
}
