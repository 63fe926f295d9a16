//! KafkaSource: accepted and listed with its status, but not consuming yet; it reports
//! `Deployed: False (NotImplemented)` so nothing pretends to read the topics. The decoding
//! rules it will follow are [`crate::decode`]'s, as NatsSource's.

use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError};
use herald_core::{Check, KafkaSource};

pub struct Kafka;

pub fn build(_k: &KafkaSource) -> Result<Kafka, ConfigError> {
    Ok(Kafka)
}

#[async_trait::async_trait]
impl Source for Kafka {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        ctx.report(Check::failed(
            "NotImplemented",
            "this Herald does not consume Kafka topics for a KafkaSource yet",
        ));
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}
