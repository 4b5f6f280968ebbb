//! The SQL of one batch: multi-row statements for every table the batch touches. Pure, so it
//! tests alone.

use super::bulk;
use mysql::Value;
use std::collections::HashSet;
use std::hash::Hash;
use stockflow_core::{
    Batch, DeadLetter, Evaluation, HoldingInput, Issue, IssueKind, Last, PriceInput, Progress,
};
use stockflow_market::Universe;

/// Rows per multi-row statement.
pub const CHUNK: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

fn text(s: impl ToString) -> Value {
    Value::Bytes(s.to_string().into_bytes())
}

fn opt_text<T: ToString>(v: Option<T>) -> Value {
    v.map_or(Value::NULL, text)
}

/// The most bytes a statement's parameters take: well under the smallest common
/// `max_allowed_packet` (MariaDB 16 MiB, MySQL 8 64 MiB). A smaller server gets a smaller
/// budget from the sink (a quarter of its `max_allowed_packet`).
pub const STATEMENT_BYTES: usize = 4 << 20;

/// The bytes a parameter takes in a statement's packet (a close bound).
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Bytes(b) => b.len() + 9,
        _ => 9,
    }
}

impl Statement {
    /// The bytes the statement takes on the wire (a close bound).
    pub fn bytes(&self) -> usize {
        self.sql.len() + self.params.iter().map(value_bytes).sum::<usize>()
    }
}

/// Multi-row statements of `cols` columns each: `head VALUES (…), (…) tail`, at most `CHUNK`
/// rows and `STATEMENT_BYTES` of parameters each.
fn chunked(head: &str, tail: &str, cols: usize, rows: Vec<Vec<Value>>) -> Vec<Statement> {
    chunked_within(head, tail, cols, rows, STATEMENT_BYTES)
}

/// As [`chunked`], at most `budget` bytes of parameters a statement (a row larger than the
/// budget goes alone).
fn chunked_within(
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<Vec<Value>>,
    budget: usize,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut chunk: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0usize;
    let flush = |chunk: &mut Vec<Vec<Value>>, out: &mut Vec<Statement>| {
        if !chunk.is_empty() {
            out.push(Statement {
                sql: format!("{head} VALUES {}{tail}", placeholders(chunk.len(), cols)),
                params: chunk.drain(..).flatten().collect(),
            });
        }
    };
    for row in rows {
        let size: usize = row.iter().map(value_bytes).sum();
        if !chunk.is_empty() && (chunk.len() >= CHUNK || bytes + size > budget) {
            flush(&mut chunk, &mut out);
            bytes = 0;
        }
        bytes += size;
        chunk.push(row);
    }
    flush(&mut chunk, &mut out);
    out
}

/// Keys per DELETE. MariaDB's range analysis of a row-constructor IN list grows with the
/// square of its length on a table with a second index over the same columns: 1,000 keys took
/// 1.2 s on `evaluation_issues` (100 keys: 14 ms), and DELETE takes no index hint.
pub const DELETE_CHUNK: usize = 100;

/// The key counts a DELETE statement is written for: a shorter chunk repeats its last key up
/// to the next of them, so that a table's deletes take at most three statement shapes (the
/// connection prepares each once and keeps it).
const DELETE_SHAPES: [usize; 3] = [1, 10, DELETE_CHUNK];

/// `DELETE FROM table WHERE (k1, k2, …) IN ((…), …)`.
fn deletes(table: &str, key_cols: &[&str], keys: Vec<Vec<Value>>) -> Vec<Statement> {
    keys.chunks(DELETE_CHUNK)
        .map(|chunk| {
            let shape = DELETE_SHAPES
                .into_iter()
                .find(|&n| n >= chunk.len())
                .unwrap_or(DELETE_CHUNK);
            let last = chunk.last().map(Vec::as_slice).unwrap_or_default();
            let padding = std::iter::repeat_n(last, shape - chunk.len());
            Statement {
                sql: format!(
                    "DELETE FROM {table} WHERE ({}) IN ({})",
                    key_cols.join(", "),
                    placeholders(shape, key_cols.len())
                ),
                params: chunk
                    .iter()
                    .map(Vec::as_slice)
                    .chain(padding)
                    .flatten()
                    .cloned()
                    .collect(),
            }
        })
        .collect()
}

/// What consolidated diffs do to a keyed table: the rows to upsert (inserted), and the keys
/// to delete (retracted and not inserted again in the same batch).
pub fn plan_rows<'a, T: 'a, K: Eq + Hash + Ord + Clone>(
    diffs: impl IntoIterator<Item = &'a (T, isize)> + Copy,
    key: impl Fn(&T) -> K,
) -> (Vec<&'a T>, Vec<K>) {
    let inserts: Vec<&T> = diffs
        .into_iter()
        .filter(|(_, d)| *d > 0)
        .map(|(r, _)| r)
        .collect();
    let inserted: HashSet<K> = inserts.iter().map(|r| key(r)).collect();
    let mut removed: Vec<K> = diffs
        .into_iter()
        .filter(|(_, d)| *d < 0)
        .map(|(r, _)| key(r))
        .filter(|k| !inserted.contains(k))
        .collect();
    removed.sort();
    removed.dedup();
    (inserts, removed)
}

fn portfolio_name(u: &Universe, p: u32) -> (&str, &str) {
    u.portfolio(p)
        .map_or(("?", "?"), |p| (p.id.as_str(), p.investor.as_str()))
}

fn ticker(u: &Universe, s: u32) -> &str {
    u.stock(s).map_or("?", |s| s.ticker.as_str())
}

const EVALUATION_UPSERT: &str =
    "INSERT INTO evaluations (investor, portfolio, as_of, nav, nav_change, nav_change_pct)";
const EVALUATION_UPDATE: &str = " ON DUPLICATE KEY UPDATE investor = VALUES(investor), \
     nav = VALUES(nav), nav_change = VALUES(nav_change), nav_change_pct = VALUES(nav_change_pct)";

/// One evaluation row's parameters (6 columns).
pub fn evaluation_row(u: &Universe, e: &Evaluation) -> Vec<Value> {
    let (pid, iid) = portfolio_name(u, e.portfolio);
    vec![
        text(iid),
        text(pid),
        text(e.date),
        text(e.value.to_fixed_string()),
        opt_text(e.change.map(|c| c.to_fixed_string())),
        opt_text(e.change_pct.map(|c| c.to_fixed_string())),
    ]
}

/// The upsert of one evaluation row (row-by-row mode, when a batch holds a row the table
/// refuses).
pub fn evaluation_upsert(u: &Universe, e: &Evaluation) -> Statement {
    Statement {
        sql: format!(
            "{EVALUATION_UPSERT} VALUES {}{EVALUATION_UPDATE}",
            placeholders(1, 6)
        ),
        params: evaluation_row(u, e),
    }
}

pub fn evaluation_upserts(u: &Universe, rows: &[&Evaluation]) -> Vec<Statement> {
    let rows = rows.iter().map(|e| evaluation_row(u, e)).collect();
    chunked(EVALUATION_UPSERT, EVALUATION_UPDATE, 6, rows)
}

pub fn evaluation_deletes(u: &Universe, keys: &[(u32, chrono::NaiveDate)]) -> Vec<Statement> {
    let keys = keys
        .iter()
        .map(|(p, d)| vec![text(portfolio_name(u, *p).0), text(d)])
        .collect();
    deletes("evaluations", &["portfolio", "as_of"], keys)
}

/// Records a row the table refused, with its values and the database's error, in place of the
/// row (which is deleted: an old value must not stay behind).
pub fn refused_row(u: &Universe, e: &Evaluation, error: &str) -> Vec<Statement> {
    let (pid, _) = portfolio_name(u, e.portfolio);
    let detail = serde_json::json!({
        "value": e.value.to_string(),
        "change": e.change.map(|c| c.to_string()),
        "change_pct": e.change_pct.map(|c| c.to_string()),
        "error": stockflow_core::limits::cut(error, 400),
    });
    vec![
        Statement {
            sql: "DELETE FROM evaluations WHERE portfolio = ? AND as_of = ?".into(),
            params: vec![text(pid), text(e.date)],
        },
        Statement {
            sql:
                "INSERT INTO evaluation_issues (portfolio, as_of, kind, held, priced, detail) \
                  VALUES (?, ?, 'refused', 0, 0, ?) ON DUPLICATE KEY UPDATE detail = VALUES(detail)"
                    .into(),
            params: vec![text(pid), text(e.date), text(detail)],
        },
    ]
}

/// Clears the 'refused' records of rows written or deleted now.
pub fn clear_refused(u: &Universe, keys: &[(u32, chrono::NaiveDate)]) -> Vec<Statement> {
    let keys = keys
        .iter()
        .map(|(p, d)| vec![text(portfolio_name(u, *p).0), text(d)])
        .collect();
    deletes("evaluation_issues", &["portfolio", "as_of"], keys)
        .into_iter()
        .map(|mut s| {
            s.sql.push_str(" AND kind = 'refused'");
            s
        })
        .collect()
}

/// The issues as statements (`db rebuild`).
pub fn issues(u: &Universe, diffs: &[(Issue, isize)]) -> Vec<Statement> {
    let (ins, del) = plan_rows(diffs, |i: &Issue| (i.portfolio, i.date, i.kind));
    let mut out = issue_deletes(u, &del);
    out.extend(chunked(
        "INSERT INTO evaluation_issues (portfolio, as_of, kind, held, priced)",
        " ON DUPLICATE KEY UPDATE held = VALUES(held), priced = VALUES(priced)",
        5,
        ins.iter()
            .map(|i| {
                vec![
                    text(portfolio_name(u, i.portfolio).0),
                    text(i.date),
                    text(i.kind.code()),
                    Value::Int(i.held),
                    Value::Int(i.priced),
                ]
            })
            .collect(),
    ));
    out
}

/// A keyed table's share of a batch: the deletes of keys retracted and not written again, then
/// the rows to load (each replaces the row of its key).
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub deletes: Vec<Statement>,
    pub target: bulk::Target,
    pub rows: bulk::Stream,
}

/// The issues' plan (the bulk path; `issues` writes the same as statements).
pub fn issue_plan(u: &Universe, diffs: &[(Issue, isize)]) -> TablePlan {
    let (ins, del) = plan_rows(diffs, |i: &Issue| (i.portfolio, i.date, i.kind));
    let mut rows = bulk::Rows::with_capacity(ins.len() * 32);
    for i in ins {
        rows.text(portfolio_name(u, i.portfolio).0)
            .date(i.date)
            .text(i.kind.code())
            .int(i.held)
            .int(i.priced)
            .end();
    }
    TablePlan {
        deletes: issue_deletes(u, &del),
        target: bulk::ISSUES,
        rows: rows.finish(),
    }
}

fn issue_deletes(u: &Universe, keys: &[(u32, chrono::NaiveDate, IssueKind)]) -> Vec<Statement> {
    deletes(
        "evaluation_issues",
        &["portfolio", "as_of", "kind"],
        keys.iter()
            .map(|(p, d, k)| vec![text(portfolio_name(u, *p).0), text(d), text(k.code())])
            .collect(),
    )
}

/// The latest closes that changed.
pub fn price_plan(u: &Universe, diffs: &[(PriceInput, isize)]) -> TablePlan {
    let (ins, del) = plan_rows(diffs, |p: &PriceInput| (p.stock, p.date));
    let mut rows = bulk::Rows::with_capacity(ins.len() * 48);
    for p in ins {
        rows.text(ticker(u, p.stock))
            .date(p.date)
            .money(p.price)
            .int(p.version.0)
            .int(i64::from(p.version.1))
            .int(p.version.2)
            .end();
    }
    TablePlan {
        deletes: deletes(
            "prices",
            &["ticker", "as_of"],
            del.iter()
                .map(|(s, d)| vec![text(ticker(u, *s)), text(d)])
                .collect(),
        ),
        target: bulk::PRICES,
        rows: rows.finish(),
    }
}

/// The latest holding records that changed.
pub fn holding_plan(u: &Universe, diffs: &[(HoldingInput, isize)]) -> TablePlan {
    let (ins, del) = plan_rows(diffs, |h: &HoldingInput| (h.portfolio, h.stock, h.from));
    let mut rows = bulk::Rows::with_capacity(ins.len() * 48);
    for h in ins {
        rows.text(portfolio_name(u, h.portfolio).0)
            .text(ticker(u, h.stock))
            .date(h.from)
            .int(h.quantity)
            .int(h.version.0)
            .int(i64::from(h.version.1))
            .int(h.version.2)
            .end();
    }
    TablePlan {
        deletes: deletes(
            "holding_records",
            &["portfolio", "ticker", "from_day"],
            del.iter()
                .map(|(p, s, d)| vec![text(portfolio_name(u, *p).0), text(ticker(u, *s)), text(d)])
                .collect(),
        ),
        target: bulk::HOLDINGS,
        rows: rows.finish(),
    }
}

/// Evaluation rows for the bulk load.
pub fn evaluation_stream(u: &Universe, rows: &[&Evaluation]) -> bulk::Stream {
    let mut out = bulk::Rows::with_capacity(rows.len() * 64);
    for e in rows {
        let (pid, iid) = portfolio_name(u, e.portfolio);
        out.text(iid)
            .text(pid)
            .date(e.date)
            .money(e.value)
            .opt_money(e.change)
            .opt_money(e.change_pct)
            .end();
    }
    out.finish()
}

/// Dead letters, `budget` bytes of parameters a statement at most (payloads are up to 64 KiB
/// each: a flood of large garbage must not make one statement over `max_allowed_packet`).
pub fn dead_letters(letters: &[DeadLetter], budget: usize) -> Vec<Statement> {
    // A replay meets the same records again: one row per log position.
    chunked_within(
        "INSERT IGNORE INTO dead_letters (topic, kafka_partition, kafka_offset, payload, \
         payload_len, payload_sha256, code, reason)",
        "",
        8,
        letters
            .iter()
            .map(|dl| {
                vec![
                    text(&dl.position.topic),
                    Value::Int(i64::from(dl.position.partition)),
                    Value::Int(dl.position.offset),
                    Value::Bytes(dl.payload.clone()),
                    Value::Int(i64::try_from(dl.payload_len).unwrap_or(i64::MAX)),
                    text(dl.sha256_hex()),
                    text(&dl.code),
                    text(&dl.reason),
                ]
            })
            .collect(),
        budget,
    )
}

/// A batch's messages into the outbox, `budget` bytes of parameters a statement at most.
pub fn outbox(topic: &str, messages: &[super::outbox::Message], budget: usize) -> Vec<Statement> {
    chunked_within(
        "INSERT INTO publish_outbox (topic, msg_key, payload)",
        "",
        3,
        messages
            .iter()
            .map(|m| {
                vec![
                    text(topic),
                    Value::Bytes(m.key.clone()),
                    Value::Bytes(m.payload.clone()),
                ]
            })
            .collect(),
        budget,
    )
}

pub fn progress(job: &str, offsets: &[Progress]) -> Vec<Statement> {
    chunked(
        "INSERT INTO stream_progress (job, topic, kafka_partition, next_offset, last_offset, \
         last_timestamp_ms, last_hash)",
        " ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset), \
         last_offset = VALUES(last_offset), last_timestamp_ms = VALUES(last_timestamp_ms), \
         last_hash = VALUES(last_hash)",
        7,
        offsets
            .iter()
            .map(|p| {
                // last_offset NULL: nothing known; -1: no record below next_offset.
                let (offset, timestamp, hash) = match p.last {
                    Last::Unknown => (Value::NULL, Value::NULL, Value::NULL),
                    Last::Nothing => (Value::Int(-1), Value::NULL, Value::NULL),
                    Last::Record(m) => (
                        Value::Int(m.offset),
                        m.timestamp_ms.map_or(Value::NULL, Value::Int),
                        Value::UInt(m.hash),
                    ),
                };
                vec![
                    text(job),
                    text(&p.position.topic),
                    Value::Int(i64::from(p.position.partition)),
                    Value::Int(p.position.offset),
                    offset,
                    timestamp,
                    hash,
                ]
            })
            .collect(),
    )
}

/// Diffs of a commit the console's change stream keeps (`evaluation_changes`).
pub const JOURNAL_DIFFS: usize = 500;
/// Commits whose diffs are kept, and commits kept in `job_commits` …
pub const JOURNAL_COMMITS: i64 = 100;
pub const TIMELINE_COMMITS: i64 = 5_000;
/// … pruned once every this many commits (and at a run's first), not at every commit: the
/// tables hold at most this many commits more than their bounds.
pub const JOURNAL_PRUNE_EVERY: i64 = 100;

/// What a commit's journal says of its evaluation diffs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalDiffs<'a> {
    pub inserted: usize,
    pub retracted: usize,
    /// Portfolio-days whose earlier evaluation the commit replaced or removed.
    pub restated: usize,
    pub first_day: Option<chrono::NaiveDate>,
    pub last_day: Option<chrono::NaiveDate>,
    /// The diffs kept (the latest days first, at most `JOURNAL_DIFFS`), each with whether its
    /// day is restated; a day's retraction and insertion stay together.
    pub kept: Vec<(&'a Evaluation, isize, bool)>,
}

/// The journal of a batch's evaluation diffs: a day is restated when the batch retracts its
/// earlier evaluation (a corrected price, a changed holding); a new day is only inserted.
/// Linear in the batch, plus a sort of the kept part only.
pub fn journal_diffs(batch: &Batch) -> JournalDiffs<'_> {
    let restated: HashSet<(u32, chrono::NaiveDate)> = batch
        .evaluations
        .iter()
        .filter(|(_, d)| *d < 0)
        .map(|(e, _)| (e.portfolio, e.date))
        .collect();
    // Latest day first; per day and portfolio, the retraction before the insertion.
    let order = |x: &&(Evaluation, isize)| (std::cmp::Reverse(x.0.date), x.0.portfolio, x.1);
    let mut diffs: Vec<&(Evaluation, isize)> = batch.evaluations.iter().collect();
    // A day has at most two diffs: the first JOURNAL_DIFFS + 2 in order hold every kept one.
    let head = JOURNAL_DIFFS + 2;
    if diffs.len() > head {
        diffs.select_nth_unstable_by_key(head, order);
        diffs.truncate(head);
    }
    diffs.sort_unstable_by_key(order);
    let mut kept: Vec<(&Evaluation, isize, bool)> = Vec::new();
    let mut i = 0;
    while i < diffs.len() {
        // A portfolio-day's diffs go in whole or not at all.
        let key = (diffs[i].0.portfolio, diffs[i].0.date);
        let n = diffs[i..]
            .iter()
            .take_while(|x| (x.0.portfolio, x.0.date) == key)
            .count();
        if kept.len() + n > JOURNAL_DIFFS {
            break;
        }
        for x in &diffs[i..i + n] {
            kept.push((&x.0, x.1, restated.contains(&key)));
        }
        i += n;
    }
    JournalDiffs {
        inserted: batch.evaluations.iter().filter(|(_, d)| *d > 0).count(),
        retracted: batch.evaluations.iter().filter(|(_, d)| *d < 0).count(),
        restated: restated.len(),
        first_day: batch.evaluations.iter().map(|(e, _)| e.date).min(),
        last_day: batch.evaluations.iter().map(|(e, _)| e.date).max(),
        kept,
    }
}

/// What the console reads of one commit: its `job_commits` row and its kept diffs (loaded in
/// bulk), and, when `prune`, the pruning that keeps both tables bounded (a range of the
/// primary key). The caller skips it for a batch written again after a lost COMMIT that had
/// landed (journalled then).
pub struct JournalEntry<'a> {
    pub job: &'a str,
    pub epoch: i64,
    pub commit_seq: i64,
    pub freshness_ms: Option<i64>,
    pub duration_ms: i64,
    pub prune: bool,
}

pub fn journal(
    u: &Universe,
    entry: &JournalEntry<'_>,
    j: &JournalDiffs<'_>,
    batch: &Batch,
) -> (Vec<Statement>, bulk::Stream) {
    let count = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut out = vec![Statement {
        sql: "INSERT IGNORE INTO job_commits (job, commit_seq, epoch, inserted, retracted, \
              restated, kept, issues, state_rows, dead_letters, first_day, last_day, \
              freshness_ms, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            .into(),
        params: vec![
            text(entry.job),
            Value::Int(entry.commit_seq),
            Value::Int(entry.epoch),
            count(j.inserted),
            count(j.retracted),
            count(j.restated),
            count(j.kept.len()),
            count(batch.issues.len()),
            count(batch.prices.len() + batch.holdings.len()),
            count(batch.dead_letters.len()),
            opt_text(j.first_day),
            opt_text(j.last_day),
            entry.freshness_ms.map_or(Value::NULL, Value::Int),
            Value::Int(entry.duration_ms),
        ],
    }];
    let mut rows = bulk::Rows::with_capacity(j.kept.len() * 96);
    for (n, (e, d, restated)) in j.kept.iter().enumerate() {
        let (pid, iid) = portfolio_name(u, e.portfolio);
        rows.text(entry.job)
            .int(entry.commit_seq)
            .uint(n as u64)
            .text(iid)
            .text(pid)
            .date(e.date)
            .int(if *d < 0 { -1 } else { 1 })
            .int(i64::from(*restated))
            .money(e.value)
            .opt_money(e.change)
            .opt_money(e.change_pct)
            .end();
    }
    if entry.prune {
        for (table, keep) in [
            ("evaluation_changes", JOURNAL_COMMITS),
            ("job_commits", TIMELINE_COMMITS),
        ] {
            out.push(Statement {
                sql: format!("DELETE FROM {table} WHERE job = ? AND commit_seq <= ?"),
                params: vec![text(entry.job), Value::Int(entry.commit_seq - keep)],
            });
        }
    }
    (out, rows.finish())
}

/// Everything one batch writes, in order: evaluation deletes and rows first (the part a data
/// error can concern), then issues and state (deletes, then bulk loads), dead letters and
/// offsets.
pub struct BatchPlan<'a> {
    /// What the console's journal keeps of the batch (computed once, whatever the retries).
    pub journal: JournalDiffs<'a>,
    pub evaluation_deletes: Vec<(u32, chrono::NaiveDate)>,
    pub evaluation_rows: Vec<&'a Evaluation>,
    /// `evaluation_rows`, encoded for the bulk load.
    pub evaluations: bulk::Stream,
    /// Issues, closes and holding records.
    pub tables: Vec<TablePlan>,
    /// Dead letters and offsets.
    pub others: Vec<Statement>,
}

impl<'a> BatchPlan<'a> {
    /// The plan of `batch`, each statement's parameters within `budget` bytes where a row
    /// allows (`STATEMENT_BYTES`, or less for a server with a small `max_allowed_packet`).
    pub fn new(u: &Universe, job: &str, batch: &'a Batch, budget: usize) -> Self {
        let (rows, deletes) = plan_rows(&batch.evaluations, |e: &Evaluation| (e.portfolio, e.date));
        let mut others = dead_letters(&batch.dead_letters, budget);
        others.extend(progress(job, &batch.offsets));
        BatchPlan {
            journal: journal_diffs(batch),
            evaluations: evaluation_stream(u, &rows),
            evaluation_deletes: deletes,
            evaluation_rows: rows,
            tables: vec![
                issue_plan(u, &batch.issues),
                price_plan(u, &batch.prices),
                holding_plan(u, &batch.holdings),
            ],
            others,
        }
    }

    /// The keys of the evaluation rows this batch writes or deletes.
    pub fn touched(&self) -> Vec<(u32, chrono::NaiveDate)> {
        let mut keys: Vec<_> = self
            .evaluation_rows
            .iter()
            .map(|e| (e.portfolio, e.date))
            .chain(self.evaluation_deletes.iter().copied())
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use stockflow_core::Money;

    fn e(p: u32, day: u32, v: i64) -> Evaluation {
        Evaluation {
            portfolio: p,
            date: chrono::NaiveDate::from_ymd_opt(2000, 1, day).unwrap_or_default(),
            value: Money::from_units(i128::from(v) * 10_000),
            change: None,
            change_pct: None,
        }
    }

    #[test]
    fn the_journal_marks_restated_days_keeps_the_latest_and_never_splits_a_pair() {
        let mut evaluations = vec![(e(0, 3, 100), -1), (e(0, 3, 120), 1), (e(0, 4, 50), 1)];
        let batch = Batch {
            evaluations: evaluations.clone().into(),
            ..Batch::default()
        };
        let j = journal_diffs(&batch);
        assert_eq!((j.inserted, j.retracted, j.restated), (2, 1, 1));
        let kept: Vec<(u32, isize, bool)> = j
            .kept
            .iter()
            .map(|(e, d, r)| (e.date.day0(), *d, *r))
            .collect();
        // Day 4 (new) first, then day 3's retraction before its insertion, both restated.
        assert_eq!(kept, [(3, 1, false), (2, -1, true), (2, 1, true)]);
        // Bounded: 500 diffs at most, whole portfolio-days only.
        evaluations.clear();
        for p in 0..300 {
            evaluations.push((e(p, 5, 10), -1));
            evaluations.push((e(p, 5, 11), 1));
        }
        let batch = Batch {
            evaluations: evaluations.into(),
            ..Batch::default()
        };
        let j = journal_diffs(&batch);
        assert_eq!(j.kept.len(), JOURNAL_DIFFS);
        assert_eq!(j.restated, 300);
        assert_eq!(j.kept.last().map(|(_, d, _)| *d), Some(1));
        // One new day first: a pair would straddle the limit, and is left out whole.
        let mut evaluations = vec![(e(0, 9, 1), 1)];
        for p in 0..300 {
            evaluations.push((e(p, 5, 10), -1));
            evaluations.push((e(p, 5, 11), 1));
        }
        let batch = Batch {
            evaluations: evaluations.into(),
            ..Batch::default()
        };
        let j = journal_diffs(&batch);
        assert_eq!(j.kept.len(), JOURNAL_DIFFS - 1);
        assert_eq!(j.kept[0].0.date.day(), 9);
        assert_eq!(j.kept.last().map(|(_, d, _)| *d), Some(1));
    }

    #[test]
    fn a_pruning_commit_prunes_the_journal_to_its_bounds_and_others_do_not() {
        let batch = Batch {
            evaluations: vec![(e(0, 3, 100), 1)].into(),
            ..Batch::default()
        };
        let j = journal_diffs(&batch);
        for (seq, prune) in [(1, true), (7, false), (12_345, true)] {
            let entry = JournalEntry {
                job: "j",
                epoch: 1,
                commit_seq: seq,
                freshness_ms: None,
                duration_ms: 0,
                prune,
            };
            let (stmts, rows) = journal(&Universe::spec(), &entry, &j, &batch);
            assert_eq!(rows.rows(), 1, "the kept diff, loaded in bulk");
            let prunes: Vec<(&str, Value)> = stmts
                .iter()
                .filter(|s| s.sql.starts_with("DELETE"))
                .map(|s| (s.sql.as_str(), s.params[1].clone()))
                .collect();
            let want = if prune {
                vec![
                    (
                        "DELETE FROM evaluation_changes WHERE job = ? AND commit_seq <= ?",
                        Value::Int(seq - JOURNAL_COMMITS),
                    ),
                    (
                        "DELETE FROM job_commits WHERE job = ? AND commit_seq <= ?",
                        Value::Int(seq - TIMELINE_COMMITS),
                    ),
                ]
            } else {
                vec![]
            };
            assert_eq!(prunes, want, "commit {seq}");
        }
    }

    #[test]
    fn restated_rows_are_upserted_not_deleted() {
        let diffs = vec![
            (e(0, 3, 100), -1),
            (e(0, 3, 120), 1),
            (e(1, 4, 50), -1),
            (e(2, 5, 70), 1),
        ];
        let (ins, del) = plan_rows(&diffs, |e: &Evaluation| (e.portfolio, e.date));
        assert_eq!(ins.len(), 2);
        assert_eq!(del.len(), 1);
        assert_eq!(del[0].0, 1);
    }

    #[test]
    fn statements_are_chunked_multi_row() {
        let u = Universe::spec();
        let rows: Vec<Evaluation> = (0..2500).map(|i| e(i % 6, 3, i64::from(i))).collect();
        let refs: Vec<&Evaluation> = rows.iter().collect();
        let stmts = evaluation_upserts(&u, &refs);
        assert_eq!(stmts.len(), 3);
        assert_eq!(stmts[0].params.len(), CHUNK * 6);
        assert_eq!(stmts[0].sql.matches("(?, ?, ?, ?, ?, ?)").count(), CHUNK);
        assert_eq!(stmts[0].params[3], text("0.000000"));
        assert!(progress("j", &[]).is_empty());
    }

    #[test]
    fn dead_letters_are_chunked_by_bytes() {
        let letters: Vec<DeadLetter> = (0..300)
            .map(|i| {
                DeadLetter::new(
                    stockflow_core::Position {
                        topic: "t".into(),
                        partition: 0,
                        offset: i,
                    },
                    &vec![b'x'; 60 * 1024],
                    "bad_json",
                    "garbage",
                )
            })
            .collect();
        // 300 payloads of 60 KiB: 18 MB, more than MariaDB's 16 MiB packet in one statement.
        let stmts = dead_letters(&letters, STATEMENT_BYTES);
        assert!(stmts.len() >= 5, "{} statements", stmts.len());
        for s in &stmts {
            assert!(
                s.bytes() <= STATEMENT_BYTES + 61 * 1024,
                "{} bytes",
                s.bytes()
            );
        }
        let rows: usize = stmts.iter().map(|s| s.params.len() / 8).sum();
        assert_eq!(rows, 300, "every letter is written once");
        // A small budget: one row a statement, never an empty one.
        let stmts = dead_letters(&letters[..3], 1000);
        assert_eq!(stmts.len(), 3);
        assert!(dead_letters(&[], 1000).is_empty());
    }

    #[test]
    fn deletes_are_chunked_short_in_three_shapes() {
        let keys: Vec<Vec<Value>> = (0..250).map(|i| vec![Value::Int(i), text("x")]).collect();
        let stmts = deletes("evaluation_issues", &["portfolio", "kind"], keys);
        assert_eq!(stmts.len(), 3);
        assert_eq!(stmts[0].params.len(), DELETE_CHUNK * 2);
        // The last 50 keys in the 100-key shape, the last key repeated.
        assert_eq!(stmts[2].sql, stmts[0].sql);
        assert_eq!(stmts[2].params.len(), DELETE_CHUNK * 2);
        assert_eq!(stmts[2].params[98], Value::Int(249));
        assert_eq!(stmts[2].params[198], Value::Int(249));
        let shapes: std::collections::BTreeSet<String> = (1..=DELETE_CHUNK)
            .flat_map(|n| {
                let keys: Vec<Vec<Value>> = (0..n as i64).map(|i| vec![Value::Int(i)]).collect();
                deletes("t", &["k"], keys).into_iter().map(|s| s.sql)
            })
            .collect();
        assert_eq!(shapes.len(), 3, "{shapes:?}");
        let one = deletes("t", &["k"], vec![vec![Value::Int(5)]]);
        assert_eq!(one[0].params, vec![Value::Int(5)]);
        assert!(deletes("t", &["k"], vec![]).is_empty());
    }

    #[test]
    fn a_batch_plans_every_table() {
        let u = Universe::spec();
        let day = chrono::NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default();
        let batch = Batch {
            time: 5,
            evaluations: vec![(e(0, 3, 1), 1), (e(1, 3, 2), -1)].into(),
            prices: vec![(
                PriceInput {
                    stock: 0,
                    date: day,
                    price: Money::from_int(1),
                    version: (1, 0, 1),
                },
                1,
            )],
            offsets: vec![Progress {
                position: stockflow_core::Position {
                    topic: "t".into(),
                    partition: 0,
                    offset: 3,
                },
                last: Last::Record(stockflow_core::RecordMark {
                    offset: 2,
                    timestamp_ms: Some(7),
                    hash: u64::MAX,
                }),
            }],
            ..Batch::default()
        };
        let plan = BatchPlan::new(&u, "job", &batch, STATEMENT_BYTES);
        assert_eq!(plan.evaluation_rows.len(), 1);
        assert_eq!(plan.evaluations.rows(), 1);
        assert_eq!(plan.evaluation_deletes.len(), 1);
        let loads: Vec<(&str, usize)> = plan
            .tables
            .iter()
            .map(|t| (t.target.table, t.rows.rows()))
            .collect();
        assert_eq!(
            loads,
            [
                ("evaluation_issues", 0),
                ("prices", 1),
                ("holding_records", 0)
            ]
        );
        assert_eq!(plan.others.len(), 1);
        assert!(plan.others[0]
            .sql
            .starts_with("INSERT INTO stream_progress"));
        assert_eq!(
            plan.others[0].params[6],
            Value::UInt(u64::MAX),
            "the hash, unsigned"
        );
        assert_eq!(plan.touched().len(), 2);
    }
}
