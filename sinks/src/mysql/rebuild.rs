//! `stockflow db rebuild`: recompute every derived row (evaluations, issues) from the stored
//! state, and bring the tables to it portfolio by portfolio. Each chunk of portfolios commits
//! alone (under the job's lease), changing only the rows that differ: an interrupted rebuild is
//! resumed by running it again, and chunks already done cost one read.

use super::statements::{self, Statement};
use super::MySqlSink;
use crate::Result;
use mysql::prelude::Queryable;
use mysql::Value;
use std::collections::{BTreeMap, BTreeSet};
use stockflow_core::{Evaluation, Issue, PortfolioId};

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
    for chunk in ids.chunks(PORTFOLIOS_PER_CHUNK) {
        let names: Vec<String> = chunk
            .iter()
            .filter_map(|p| sink.universe().portfolio(*p).map(|d| d.id.clone()))
            .collect();
        let chunk_report = sink.transaction(None, |tx, u, _| {
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
            for p in chunk {
                let name = u.portfolio(*p).map_or("?", |d| d.id.as_str());
                for e in by_portfolio.get(p).into_iter().flatten() {
                    let key = (name.to_string(), e.date.to_string());
                    if have.get(&key) == Some(&shown(e)) {
                        r.unchanged += 1;
                    } else {
                        upserts.push(e);
                    }
                    wanted.insert(key);
                }
            }
            let extra: Vec<Vec<Value>> = have
                .keys()
                .filter(|k| !wanted.contains(*k))
                .map(|(p, d)| vec![text(p), text(d)])
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
            Ok(r)
        })?;
        report.upserted += chunk_report.upserted;
        report.deleted += chunk_report.deleted;
        report.unchanged += chunk_report.unchanged;
        report.issues_changed += chunk_report.issues_changed;
        progress((chunk[0] as usize + chunk.len()).min(total), total);
    }
    sink.transaction(None, |tx, _, _| super::lease::rebuild_finished(tx))?;
    Ok(report)
}
