//! The records that flow through the job, and where they sit in the log.

use crate::limits::{cut, MAX_DEAD_LETTER_PAYLOAD, MAX_REASON};
use crate::money::{Money, Percent};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A stock's dense index in its universe.
pub type StockId = u32;
/// A portfolio's dense index in its universe.
pub type PortfolioId = u32;

/// Orders the versions of a record: later wins. (log timestamp ms, partition, offset) for
/// records read from the log; any increasing sequence for in-memory input.
pub type Version = (i64, i32, i64);

/// Where a record sits in the log.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What identifies one record of a log: its offset, its log timestamp and a hash of its key and
/// payload (xxh3, computed by the log interface). A job stores the mark of the last record it
/// applied on each partition with its offsets, and at start compares it with what the log holds
/// at that offset: a log that was replaced (a broker that lost its data and was refilled, a
/// topic recreated and written again) holds another record there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordMark {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub hash: u64,
}

/// What a job knows of the records of a partition below its next offset: what identifies the
/// log it read.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Last {
    /// Nothing known (the job started past records it did not read, or the log's start was
    /// gone): the log cannot be checked there.
    #[default]
    Unknown,
    /// The partition holds no record a reader is handed below the next offset (it starts
    /// there, or holds only transaction markers below it).
    Nothing,
    /// A record the job applied below the next offset (the last one, as the job reads).
    Record(RecordMark),
}

impl Last {
    /// What is still true of the records below `next`: a record at or above it names no
    /// record below it.
    pub fn below(self, next: i64) -> Last {
        match self {
            Last::Record(m) if m.offset >= next => Last::Unknown,
            other => other,
        }
    }
}

/// How far a job has read one partition: the next offset to read, and what it knows of the
/// records below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Progress {
    pub position: Position,
    pub last: Last,
}

/// A close as read: several versions of one (stock, day) may arrive (duplicates, corrections).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PriceInput {
    pub stock: StockId,
    pub date: NaiveDate,
    pub price: Money,
    pub version: Version,
}

/// A holding record as read: quantity of `stock` in `portfolio` from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HoldingInput {
    pub portfolio: PortfolioId,
    pub stock: StockId,
    pub from: NaiveDate,
    pub quantity: i64,
    pub version: Version,
}

/// One evaluated portfolio-day: the job's output rows (inserted +1, retracted −1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evaluation {
    pub portfolio: PortfolioId,
    pub date: NaiveDate,
    pub value: Money,
    /// Change versus the previous evaluated day; None on the portfolio's first day.
    pub change: Option<Money>,
    /// change / previous value × 100, rounded half away from zero to 6 decimals; None on the
    /// first day.
    pub change_pct: Option<Percent>,
}

/// Why a portfolio-day has no evaluation although some of its inputs arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IssueKind {
    /// Some held stock has no close for the day (yet).
    Incomplete,
    /// The value or change would leave the bounds of the contract (cannot happen with valid
    /// input; kept so that arithmetic never panics).
    Overflow,
}

impl IssueKind {
    pub fn code(self) -> &'static str {
        match self {
            IssueKind::Incomplete => "incomplete",
            IssueKind::Overflow => "overflow",
        }
    }
}

/// A portfolio-day the dataflow could not evaluate, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Issue {
    pub portfolio: PortfolioId,
    pub date: NaiveDate,
    pub kind: IssueKind,
    /// For `Incomplete`: the stocks held that day and those with a close.
    pub held: i64,
    pub priced: i64,
}

/// A record the sources could not use, with where it sits in the log and why. The payload is
/// kept up to `MAX_DEAD_LETTER_PAYLOAD` bytes; its full length and SHA-256 always.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetter {
    pub position: Position,
    pub payload: Vec<u8>,
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    /// A stable reason code (`docs/input.md`).
    pub code: String,
    pub reason: String,
}

impl DeadLetter {
    pub fn new(position: Position, payload: &[u8], code: &str, reason: &str) -> Self {
        let kept = &payload[..payload.len().min(MAX_DEAD_LETTER_PAYLOAD)];
        DeadLetter {
            position,
            payload: kept.to_vec(),
            payload_len: payload.len() as u64,
            payload_sha256: Sha256::digest(payload).into(),
            code: cut(code, 64).to_string(),
            reason: cut(reason, MAX_REASON).to_string(),
        }
    }

    pub fn is_cut(&self) -> bool {
        self.payload.len() as u64 != self.payload_len
    }

    pub fn sha256_hex(&self) -> String {
        use std::fmt::Write;
        self.payload_sha256
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_bounded_but_identifiable() {
        let pos = Position {
            topic: "t".into(),
            partition: 0,
            offset: 7,
        };
        let big = vec![b'x'; 100_000];
        let dl = DeadLetter::new(pos.clone(), &big, "malformed_json", &"r".repeat(5000));
        assert_eq!(dl.payload.len(), MAX_DEAD_LETTER_PAYLOAD);
        assert_eq!(dl.payload_len, 100_000);
        assert!(dl.is_cut());
        assert_eq!(dl.reason.len(), MAX_REASON);
        let small = DeadLetter::new(pos, b"", "empty_payload", "no payload");
        assert!(!small.is_cut());
        // SHA-256 of the empty string.
        assert!(small.sha256_hex().starts_with("e3b0c44298fc1c14"));
    }
}
