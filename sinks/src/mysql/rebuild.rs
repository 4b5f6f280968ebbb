//! `stockflow db rebuild`: recompute every derived row (evaluations, issues) from the stored
//! state, and bring the tables to it portfolio by portfolio. Each chunk of portfolios commits
//! alone (under the job's lease), changing only the rows that differ: an interrupted rebuild is
//! resumed by running it again, and chunks already done cost one read. Each chunk journals its
//! changes for the console and, when the sink publishes, puts them in the outbox, as the job's
//! commits do: a rebuild that changed rows is seen downstream like a restatement.

use super::statements::{self, Statement};
use super::MySqlSink;
use crate::Result;
use mysql::prelude::Queryable;
use mysql::Value;
use std::collections::{BTreeMap, BTreeSet};
use stockflow_core::{Batch, Evaluation, Fixed6, Issue, PortfolioId};

/// Portfolios per transaction.
pub const PORTFOLIOS_PER_CHUNK: usize = 200;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub portfolios: usize,
    pub upserted: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub issues_changed: u64,
}

/// An evaluation as the table shows it: (value, change, change %) with 6 decimals.
type Shown = (String, Option<String>, Option<String>);
/// (portfolio, day, value, change, change %) as read.
type StoredRow = (String, String, String, Option<String>, Option<String>);

fn shown(e: &Evaluation) -> Shown {
    (
        e.value.to_fixed_string(),
        e.change.map(|c| c.to_fixed_string()),
        e.change_pct.map(|c| c.to_fixed_string()),
    )
}

/// A stored row as an evaluation (for the journal's retraction of it); None if a value does
/// not read back (never written so by stockflow: the journal then shows the new value only).
fn stored(portfolio: PortfolioId, row: (&str, &Shown)) -> Option<Evaluation> {
    let (day, (value, change, pct)) = row;
    let money = |t: &Option<String>| -> Option<Option<Fixed6>> {
        match t {
            None => Some(None),
            Some(t) => t.parse().ok().map(Some),
        }
    };
    Some(Evaluation {
        portfolio,
        date: day.parse().ok()?,
        value: value.parse().ok()?,
        change: money(change)?,
        change_pct: money(pct)?,
    })
}

fn text(s: impl ToString) -> Value {
    Value::Bytes(s.to_string().into_bytes())
}

/// Brings `evaluations` and the dataflow's issues (incomplete, overflow) to `want`, calling
/// `progress(done, total)` after each chunk.
pub fn rebuild(
    sink: &mut MySqlSink,
    evaluations: &BTreeSet<Evaluation>,
    issues: &BTreeSet<Issue>,
    mut progress: impl FnMut(usize, usize),
) -> Result<RebuildReport> {
    let total = sink.universe().portfolios.len();
    let mut by_portfolio: BTreeMap<PortfolioId, Vec<&Evaluation>> = BTreeMap::new();
    for e in evaluations {
        by_portfolio.entry(e.portfolio).or_default().push(e);
    }
    let mut issues_by: BTreeMap<PortfolioId, Vec<&Issue>> = BTreeMap::new();
    for i in issues {
        issues_by.entry(i.portfolio).or_default().push(i);
    }
    let mut report = RebuildReport {
        portfolios: total,
        ..RebuildReport::default()
    };
    let ids: Vec<PortfolioId> = (0..total as PortfolioId).collect();
    // Until the last chunk commits, `run` refuses to start on a half-rebuilt database.
    sink.transaction(None, |tx, _, _| super::lease::rebuild_started(tx))?;
    let (job, epoch) = (sink.job.clone(), sink.epoch);
    let topic = sink.publish.as_ref().map(|(t, _)| t.clone());
    let budget = sink.budget;
    for chunk in ids.chunks(PORTFOLIOS_PER_CHUNK) {
        let names: Vec<String> = chunk
            .iter()
            .filter_map(|p| sink.universe().portfolio(*p).map(|d| d.id.clone()))
            .collect();
        let chunk_report = sink.transaction(None, |tx, u, commit| {
            let started = std::time::Instant::now();
            let mut r = RebuildReport::default();
            let marks = vec!["?"; names.len()].join(", ");
            let params: Vec<Value> = names.iter().map(text).collect();
            let have: Vec<StoredRow> = tx.exec(
                format!(
                    "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
                     CAST(nav_change_pct AS CHAR) FROM evaluations WHERE portfolio IN ({marks})"
                ),
                params.clone(),
            )?;
            let have: BTreeMap<(String, String), Shown> = have
                .into_iter()
                .map(|(p, d, v, c, pct)| ((p, d), (v, c, pct)))
                .collect();
            let mut upserts: Vec<&Evaluation> = Vec::new();
            let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
            // The chunk's diffs, as a job's batch holds them: a changed row retracts its
            // stored value and inserts the new one.
            let mut diffs: Vec<(Evaluation, isize)> = Vec::new();
            let mut ids_of: BTreeMap<&str, PortfolioId> = BTreeMap::new();
            for p in chunk {
                let name = u.portfolio(*p).map_or("?", |d| d.id.as_str());
                ids_of.insert(name, *p);
                for e in by_portfolio.get(p).into_iter().flatten() {
                    let key = (name.to_string(), e.date.to_string());
                    let old = have.get(&key);
                    if old == Some(&shown(e)) {
                        r.unchanged += 1;
                    } else {
                        upserts.push(e);
                        if let Some(old) = old.and_then(|o| stored(*p, (&key.1, o))) {
                            diffs.push((old, -1));
                        }
                        diffs.push(((*e).clone(), 1));
                    }
                    wanted.insert(key);
                }
            }
            let extra: Vec<Vec<Value>> = have
                .iter()
                .filter(|(k, _)| !wanted.contains(*k))
                .map(|((p, d), old)| {
                    if let Some(old) = ids_of.get(p.as_str()).and_then(|id| stored(*id, (d, old))) {
                        diffs.push((old, -1));
                    }
                    vec![text(p), text(d)]
                })
                .collect();
            r.deleted = extra.len() as u64;
            r.upserted = upserts.len() as u64;
            let mut stmts: Vec<Statement> = Vec::new();
            for keys in extra.chunks(statements::CHUNK) {
                stmts.push(Statement {
                    sql: format!(
                        "DELETE FROM evaluations WHERE (portfolio, as_of) IN ({})",
                        vec!["(?, ?)"; keys.len()].join(", ")
                    ),
                    params: keys.iter().flatten().cloned().collect(),
                });
            }
            stmts.extend(statements::evaluation_upserts(u, &upserts));
            // The dataflow's issues of these portfolios: replaced whole (few rows).
            let deleted_issues = tx.exec_iter(
                format!(
                    "DELETE FROM evaluation_issues WHERE kind IN ('incomplete', 'overflow') AND portfolio IN ({marks})"
                ),
                params,
            )?;
            r.issues_changed = deleted_issues.affected_rows();
            drop(deleted_issues);
            let chunk_issues: Vec<(Issue, isize)> = chunk
                .iter()
                .flat_map(|p| issues_by.get(p).into_iter().flatten())
                .map(|i| ((*i).clone(), 1))
                .collect();
            stmts.extend(statements::issues(u, &chunk_issues));
            for s in &stmts {
                tx.exec_drop(&s.sql, s.params.clone())?;
            }
            // Each try of a chunk reads its rows again: after a lost COMMIT that had landed it
            // finds nothing to change, and journals nothing.
            if !diffs.is_empty() && !commit.replay {
                diffs.sort();
                let batch = Batch {
                    evaluations: diffs.into(),
                    ..Batch::default()
                };
                let entry = statements::JournalEntry {
                    job: &job,
                    epoch,
                    commit_seq: commit.seq,
                    freshness_ms: None,
                    duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
                    prune: commit.seq % statements::JOURNAL_PRUNE_EVERY == 0,
                };
                let (journal, rows) =
                    statements::journal(u, &entry, &statements::journal_diffs(&batch), &batch);
                super::run(tx, &journal)?;
                super::bulk::load(tx, &super::bulk::JOURNAL, &rows)?;
                if let Some(topic) = &topic {
                    let messages = super::outbox::messages(u, &batch, epoch, commit.seq);
                    super::run(tx, &statements::outbox(topic, &messages, budget))?;
                }
            }
            Ok(r)
        })?;
        report.upserted += chunk_report.upserted;
        report.deleted += chunk_report.deleted;
        report.unchanged += chunk_report.unchanged;
        report.issues_changed += chunk_report.issues_changed;
        progress((chunk[0] as usize + chunk.len()).min(total), total);
    }
    sink.transaction(None, |tx, _, _| super::lease::rebuild_finished(tx))?;
    // What the chunks put in the outbox goes out now, as after a job's commit.
    sink.drain_with_retries()?;
    Ok(report)
}
