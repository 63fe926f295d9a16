//! Lag on a Kafka channel: per consumer group, the sum over partitions of the high watermark
//! minus the group's committed offset. One subscription's ([`TopicLag::of`], for
//! `herald_channel_lag` and replay progress) and the slowest subscription's
//! ([`TopicLag::slowest`], for admission by backlog). Committed offsets trail
//! acknowledgements by up to the commit interval, so the figure errs on the side of more lag.

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

    /// `(partition, high watermark)` of every partition of the topic.
    fn heads(&mut self) -> KafkaResult<Vec<(i32, i64)>> {
        if self.reader.is_none() {
            self.reader = Some(GroupOffsets::open_reader(&self.config, &self.topic)?);
        }
        let reader = self.reader.as_ref().expect("opened above");
        let partitions = reader.partitions()?;
        let mut heads = Vec::with_capacity(partitions.len());
        for p in partitions {
            heads.push((p, reader.watermarks(p)?.1));
        }
        Ok(heads)
    }

    /// One group's lag behind `heads`, by its committed offsets (an OffsetFetch for a known
    /// group id, which needs no group listing).
    fn group_lag(&mut self, group: &str, heads: &[(i32, i64)]) -> KafkaResult<u64> {
        let offsets = match self.groups.entry(group.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let client = GroupOffsets::open(&self.config, &self.topic, e.key())?;
                e.insert(client)
            }
        };
        let partitions: Vec<i32> = heads.iter().map(|(p, _)| *p).collect();
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
        Ok(lag as u64)
    }

    /// The lag of one group; blocking, so run it on the blocking pool.
    pub fn of(&mut self, group: &str) -> KafkaResult<u64> {
        let heads = self.heads()?;
        self.group_lag(group, &heads)
    }

    /// The largest lag among the topic's groups: every replica's, as the cluster lists them,
    /// or — where the broker cannot list groups (tansu 0.6 fails ListGroups) — the groups of
    /// the subscriptions opened here (`known`). Blocking, so run it on the blocking pool.
    pub fn slowest(&mut self, known: &[String]) -> KafkaResult<u64> {
        let heads = self.heads()?;
        let prefix = format!("{}.", self.topic);
        let own_seek_group = format!("{}.herald-seek", self.topic);
        let reader = self.reader.as_ref().expect("opened by heads");
        let groups: Vec<String> = match reader.group_names(self.config.request_timeout) {
            Ok(listed) => listed
                .into_iter()
                .filter(|g| g.starts_with(&prefix) && *g != own_seek_group)
                .collect(),
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %e, "cannot list consumer groups; reading the lag of those opened here");
                known.to_vec()
            }
        };
        self.groups.retain(|g, _| groups.contains(g));
        let mut slowest = 0;
        for group in groups {
            slowest = slowest.max(self.group_lag(&group, &heads)?);
        }
        Ok(slowest)
    }
}
