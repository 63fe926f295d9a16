//! Where a new subscription or a seek puts a consumer group's committed offsets, computed
//! from the partitions' watermarks and record times.

use super::offsets::GroupOffsets;
use crate::Position;
use rdkafka::error::KafkaError;

/// The end of each partition the group has no committed offset for.
pub(crate) fn heads_without_commits(offsets: &GroupOffsets) -> Result<Vec<(i32, i64)>, KafkaError> {
    let partitions = offsets.partitions()?;
    let committed = offsets.committed(&partitions)?;
    let mut heads = Vec::new();
    for (partition, offset) in committed {
        if offset.is_none() {
            heads.push((partition, offsets.watermarks(partition)?.1));
        }
    }
    Ok(heads)
}

/// Where one partition resumes after a seek.
#[derive(Debug)]
pub(crate) struct SeekTarget {
    pub partition: i32,
    pub offset: i64,
    /// The partition's end when resolved: a target below it replays something.
    pub high: i64,
}

/// Why a position cannot be sought to, in words for the operator.
#[derive(Debug)]
pub(crate) enum Unseekable {
    NotRetained(String),
    /// Beyond the end of every partition.
    PastHead(String),
}

/// The offset of `position` in every partition. The outer error is Kafka's; the inner one
/// says why the position cannot be sought to.
pub(crate) fn resolve(
    offsets: &GroupOffsets,
    position: &Position,
    open_reader: impl FnOnce() -> Result<GroupOffsets, KafkaError>,
) -> Result<Result<Vec<SeekTarget>, Unseekable>, KafkaError> {
    let partitions = offsets.partitions()?;
    let mut bounds = Vec::with_capacity(partitions.len());
    for partition in &partitions {
        bounds.push((*partition, offsets.watermarks(*partition)?));
    }
    let mut targets = Vec::with_capacity(bounds.len());
    match position {
        Position::Offset(o) => {
            let wanted = i64::try_from(*o).unwrap_or(i64::MAX);
            let head = bounds.iter().map(|(_, (_, high))| *high).max().unwrap_or(0);
            if wanted > head {
                return Ok(Err(Unseekable::PastHead(format!(
                    "the highest partition end is offset {head}"
                ))));
            }
            for (partition, (low, high)) in bounds {
                if wanted < low {
                    return Ok(Err(Unseekable::NotRetained(format!(
                        "partition {partition} holds offsets {low}..{high}"
                    ))));
                }
                targets.push(SeekTarget {
                    partition,
                    offset: wanted.min(high),
                    high,
                });
            }
        }
        Position::Time(t) => {
            let millis = t.timestamp_millis();
            let found = offsets.offsets_for_time(&partitions, millis)?;
            let reader = open_reader()?;
            for (partition, (low, high)) in bounds {
                let mut offset = found.get(&partition).copied().flatten().unwrap_or(high);
                if low < high && offset <= low {
                    // Some brokers (tansu) answer offset 0 instead of "none" when no record
                    // is that recent: check the first record's time before replaying it all.
                    offset = match reader.timestamp_at(partition, low)? {
                        Some(ts) if ts >= millis => low,
                        _ => high,
                    };
                }
                if low > 0 && offset == low && low < high {
                    return Ok(Err(Unseekable::NotRetained(format!(
                        "partition {partition} no longer holds records before offset {low}, which may be after {t}"
                    ))));
                }
                targets.push(SeekTarget {
                    partition,
                    offset: offset.clamp(low, high),
                    high,
                });
            }
        }
    }
    Ok(Ok(targets))
}

/// The offset the subscription resumes from: the lowest among partitions that replay
/// something, else the lowest of all (every partition is at its end).
pub(crate) fn resume_offset(targets: &[SeekTarget]) -> u64 {
    let replaying = targets
        .iter()
        .filter(|t| t.offset < t.high)
        .map(|t| t.offset)
        .min();
    let resume = replaying.or_else(|| targets.iter().map(|t| t.offset).min());
    resume.and_then(|o| u64::try_from(o).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64, high: i64) -> SeekTarget {
        SeekTarget {
            partition,
            offset,
            high,
        }
    }

    #[test]
    fn resumes_from_the_lowest_partition_that_replays() {
        // Partitions 0 and 2 are empty (their end is 0); 1 replays from 2.
        assert_eq!(resume_offset(&[at(0, 0, 0), at(1, 2, 5), at(2, 0, 0)]), 2);
        assert_eq!(resume_offset(&[at(0, 3, 3), at(1, 7, 7)]), 3);
        assert_eq!(resume_offset(&[]), 0);
    }
}
