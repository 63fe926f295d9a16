//! The slowest subscription's lag on a Kafka channel, for admission by backlog: per consumer
//! group of the topic (every replica's, as listed by the cluster), the sum over partitions of
//! the high watermark minus the committed offset. Committed offsets trail acknowledgements by
//! up to the commit interval, so the figure errs on the side of more lag.

use super::offsets::GroupOffsets;
use super::KafkaConfig;
use rdkafka::error::KafkaResult;
use std::collections::HashMap;
use std::sync::Arc;

/// The clients the reading needs, kept between readings (creating one costs threads).
pub struct TopicLag {
    config: Arc<KafkaConfig>,
    topic: String,
    reader: Option<GroupOffsets>,
    groups: HashMap<String, GroupOffsets>,
}

impl TopicLag {
    pub fn new(config: Arc<KafkaConfig>, topic: String) -> Self {
        Self {
            config,
            topic,
            reader: None,
            groups: HashMap::new(),
        }
    }

    /// Reads it now; blocking, so run it on the blocking pool.
    pub fn slowest(&mut self) -> KafkaResult<u64> {
        if self.reader.is_none() {
            self.reader = Some(GroupOffsets::open_reader(&self.config, &self.topic)?);
        }
        let reader = self.reader.as_ref().expect("opened above");
        let partitions = reader.partitions()?;
        let mut heads = Vec::with_capacity(partitions.len());
        for p in &partitions {
            heads.push((*p, reader.watermarks(*p)?.1));
        }
        let prefix = format!("{}.", self.topic);
        let own_seek_group = format!("{}.herald-seek", self.topic);
        let listed: Vec<String> = reader
            .group_names(self.config.request_timeout)?
            .into_iter()
            .filter(|g| g.starts_with(&prefix) && *g != own_seek_group)
            .collect();
        self.groups.retain(|g, _| listed.contains(g));
        let mut slowest = 0;
        for group in listed {
            let offsets = match self.groups.entry(group) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let client = GroupOffsets::open(&self.config, &self.topic, e.key())?;
                    e.insert(client)
                }
            };
            let committed = offsets.committed(&partitions)?;
            let lag: i64 = heads
                .iter()
                .map(|(p, head)| {
                    // A partition the group has not committed on yet counts from nothing
                    // behind: new groups get the head committed when they subscribe.
                    let at = committed.get(p).copied().flatten().unwrap_or(*head);
                    (head - at).max(0)
                })
                .sum();
            slowest = slowest.max(lag as u64);
        }
        Ok(slowest)
    }
}
