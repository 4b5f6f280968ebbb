//! The Kafka source's merge against the real broker: partitions whose records are out of key
//! order (as two producers leave them) come out in key order across partitions, and the resume
//! offset it reports never skips a record it has not handed over.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use stockflow_transport::{Log, LogSource, Lookahead, Position, Watermarks};

/// Every partition of `topic` from its first record.
fn log_start(topic: &str, marks: &[Watermarks]) -> Vec<Position> {
    marks
        .iter()
        .map(|w| Position {
            topic: topic.to_string(),
            partition: w.partition,
            offset: w.low,
        })
        .collect()
}

/// A restart from each partition's resume offset must not skip a record not handed over yet
/// (`handed`: the offsets handed over, by partition).
fn assert_resume_skips_nothing(
    source: &dyn LogSource,
    topic: &str,
    marks: &[Watermarks],
    handed: &BTreeMap<i32, BTreeSet<i64>>,
) {
    for w in marks {
        let resume = source
            .resume_offset(topic, w.partition)
            .unwrap_or_else(|| panic!("no resume offset for partition {}", w.partition));
        let done = handed.get(&w.partition);
        let first_missing = (w.low..w.high)
            .find(|o| !done.is_some_and(|d| d.contains(o)))
            .unwrap_or(w.high);
        assert!(
            resume <= first_missing,
            "partition {}: resume {resume} skips offset {first_missing}",
            w.partition
        );
    }
}

#[test]
fn out_of_order_partitions_come_out_in_key_order_and_resume_skips_nothing() {
    let topic = common::fresh_topic("merge", 3);
    // Three keys (they spread over the partitions); each key's days out of order by up to
    // three, as two producers' batches interleave.
    let days: Vec<i64> = (0..60)
        .flat_map(|d| if d % 2 == 0 { [d + 1, d] } else { [d, d + 3] })
        .collect();
    let payloads: Vec<String> = days.iter().map(|d| d.to_string()).collect();
    let log = common::log();
    let producer = log.producer().unwrap_or_else(|e| panic!("{e}"));
    let rt = common::runtime();
    rt.block_on(async {
        // Key by key in turns, each write acknowledged before the next: the log order is this.
        for pair in payloads.chunks(2) {
            for key in ["alpha", "bravo", "charlie"] {
                for p in pair {
                    producer
                        .send(&topic, key.as_bytes(), p.as_bytes())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    });
    let marks = log.watermarks(&topic).unwrap_or_else(|e| panic!("{e}"));
    let start = log_start(&topic, &marks);
    let total: i64 = marks.iter().map(|w| w.high - w.low).sum();
    let mut source = log.open_source(&start).unwrap_or_else(|e| panic!("{e}"));
    source.order_by(
        Box::new(|r| std::str::from_utf8(r.payload?).ok()?.parse().ok()),
        Lookahead { initial: 3, max: 3 },
    );
    let mut keys = Vec::new();
    let mut handed: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (keys.len() as i64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", keys.len());
        source
            .poll_batch(37, Duration::from_millis(100), &mut |r| {
                let key: i64 = std::str::from_utf8(r.payload.expect("a payload"))
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("payload at {}", r.offset));
                keys.push(key);
                handed.entry(r.partition).or_default().insert(r.offset);
                stockflow_transport::Take::Next
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_resume_skips_nothing(source.as_ref(), &topic, &marks, &handed);
    }
    assert_eq!(keys.len() as i64, total);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "handed over out of key order");
}

/// More records a partition than the source keeps taken out of librdkafka
/// (`stockflow_kafka::LOCAL_RECORDS`), read in small polls that refuse a record now and then:
/// every record comes out once, with its key and payload, in key order; the resume offset never
/// skips a record not handed over; and each partition ends at its log end.
#[test]
fn partitions_longer_than_the_local_buffer_come_out_whole_and_in_key_order() {
    let per_partition = stockflow_kafka::LOCAL_RECORDS as i64 * 2 + 517;
    let topic = common::fresh_topic("merge-long", 2);
    let log = common::log();
    let producer = log.producer().unwrap_or_else(|e| panic!("{e}"));
    let rt = common::runtime();
    // Keys "even" and "odd" in turns (they land on two partitions, or one: either way every
    // record must come out); every tenth pair of each is swapped, so the merge sorts.
    let order = |i: i64| match i % 20 {
        10 => i + 1,
        11 => i - 1,
        _ => i,
    };
    let mut sent: Vec<(String, i64)> = Vec::new();
    for i in 0..per_partition {
        for key in ["even", "odd"] {
            sent.push((key.to_string(), order(i)));
        }
    }
    rt.block_on(async {
        for chunk in sent.chunks(5_000) {
            let sends = chunk.iter().map(|(key, k)| {
                let payload = format!("{k}:{key}");
                let producer = &producer;
                let topic = &topic;
                async move {
                    producer
                        .send(topic, key.as_bytes(), payload.as_bytes())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                }
            });
            futures::future::join_all(sends).await;
        }
    });
    let marks = log.watermarks(&topic).unwrap_or_else(|e| panic!("{e}"));
    let total: i64 = marks.iter().map(|w| w.high - w.low).sum();
    assert_eq!(total, per_partition * 2, "the log holds what was sent");
    let start = log_start(&topic, &marks);
    let mut source = log.open_source(&start).unwrap_or_else(|e| panic!("{e}"));
    source.order_by(
        Box::new(|r| {
            let p = std::str::from_utf8(r.payload?).ok()?;
            p.split(':').next()?.parse().ok()
        }),
        Lookahead { initial: 2, max: 2 },
    );
    let mut got: Vec<(String, i64)> = Vec::new();
    let mut offsets: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut refused = 0u32;
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (got.len() as i64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", got.len());
        source
            .poll_batch(3_001, Duration::from_millis(100), &mut |r| {
                seen += 1;
                if seen % 4_999 == 0 {
                    refused += 1;
                    return stockflow_transport::Take::Refuse;
                }
                let payload = std::str::from_utf8(r.payload.expect("a payload")).expect("utf-8");
                let (k, key) = payload.split_once(':').expect("key:name");
                assert_eq!(r.key, Some(key.as_bytes()), "the key at {}", r.offset);
                assert!(r.timestamp_ms.is_some(), "a log time at {}", r.offset);
                assert!(
                    offsets.entry(r.partition).or_default().insert(r.offset),
                    "offset {} of partition {} handed over twice",
                    r.offset,
                    r.partition
                );
                got.push((key.to_string(), k.parse().expect("a number")));
                stockflow_transport::Take::Next
            })
            .unwrap_or_else(|e| panic!("{e}"));
        // Though the source has taken records out of librdkafka ahead of the merge.
        assert_resume_skips_nothing(source.as_ref(), &topic, &marks, &offsets);
    }
    assert!(refused > 0, "the test refused records");
    let keys: Vec<i64> = got.iter().map(|(_, k)| *k).collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "handed over out of key order"
    );
    let mut want = sent;
    want.sort();
    got.sort();
    assert_eq!(got, want, "every record once, with its key and payload");
    for w in &marks {
        assert_eq!(
            source.resume_offset(&topic, w.partition),
            Some(w.high),
            "partition {} ends at its log end",
            w.partition
        );
    }
}
