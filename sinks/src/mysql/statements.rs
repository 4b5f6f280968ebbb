//! Multi-row SQL statements for one batch: pure, so they test alone.

use mysql::Value;
use stockflow_dataflow::{DeadLetter, Evaluation};
use stockflow_market::Universe;
use stockflow_transport::Position;

/// Rows per multi-row statement.
pub const CHUNK: usize = 1000;

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

/// What a consolidated batch of diffs does to the table: the rows to upsert (inserted), and
/// the keys to delete (retracted and not inserted again in the same batch).
pub fn plan_rows(
    diffs: &[(Evaluation, isize)],
) -> (Vec<&Evaluation>, Vec<(u32, chrono::NaiveDate)>) {
    let inserts: Vec<&Evaluation> = diffs
        .iter()
        .filter(|(_, d)| *d > 0)
        .map(|(e, _)| e)
        .collect();
    let inserted: std::collections::HashSet<(u32, chrono::NaiveDate)> =
        inserts.iter().map(|e| (e.portfolio, e.date)).collect();
    let mut deletes: Vec<(u32, chrono::NaiveDate)> = diffs
        .iter()
        .filter(|(_, d)| *d < 0)
        .map(|(e, _)| (e.portfolio, e.date))
        .filter(|k| !inserted.contains(k))
        .collect();
    deletes.sort_unstable();
    deletes.dedup();
    (inserts, deletes)
}

pub fn upserts(universe: &Universe, rows: &[&Evaluation]) -> Vec<Statement> {
    rows.chunks(CHUNK)
        .map(|chunk| {
            let mut params = Vec::with_capacity(chunk.len() * 6);
            for e in chunk {
                let (pid, iid) = universe
                    .portfolio(e.portfolio)
                    .map_or(("?", "?"), |p| (p.id.as_str(), p.investor.as_str()));
                params.extend([
                    text(iid),
                    text(pid),
                    text(e.date),
                    text(e.value),
                    opt_text(e.change),
                    opt_text(e.change_pct),
                ]);
            }
            Statement {
                sql: format!(
                    "INSERT INTO evaluations (investor, portfolio, as_of, nav, nav_change, nav_change_pct) \
                     VALUES {} ON DUPLICATE KEY UPDATE investor = VALUES(investor), nav = VALUES(nav), \
                     nav_change = VALUES(nav_change), nav_change_pct = VALUES(nav_change_pct)",
                    placeholders(chunk.len(), 6)
                ),
                params,
            }
        })
        .collect()
}

pub fn deletes(universe: &Universe, keys: &[(u32, chrono::NaiveDate)]) -> Vec<Statement> {
    keys.chunks(CHUNK)
        .map(|chunk| {
            let mut params = Vec::with_capacity(chunk.len() * 2);
            for (p, d) in chunk {
                params.push(text(universe.portfolio(*p).map_or("?", |p| p.id.as_str())));
                params.push(text(d));
            }
            Statement {
                sql: format!(
                    "DELETE FROM evaluations WHERE (portfolio, as_of) IN ({})",
                    placeholders(chunk.len(), 2)
                ),
                params,
            }
        })
        .collect()
}

pub fn dead_letters(letters: &[DeadLetter]) -> Vec<Statement> {
    letters
        .chunks(CHUNK)
        .map(|chunk| {
            let mut params = Vec::with_capacity(chunk.len() * 6);
            for dl in chunk {
                params.extend([
                    text(&dl.position.topic),
                    Value::Int(i64::from(dl.position.partition)),
                    Value::Int(dl.position.offset),
                    Value::Bytes(dl.payload.clone()),
                    text(&dl.code),
                    text(&dl.reason),
                ]);
            }
            Statement {
                // A replay meets the same records again: one row per log position.
                sql: format!(
                    "INSERT IGNORE INTO dead_letters (topic, kafka_partition, kafka_offset, payload, code, reason) VALUES {}",
                    placeholders(chunk.len(), 6)
                ),
                params,
            }
        })
        .collect()
}

pub fn progress(job: &str, offsets: &[Position]) -> Option<Statement> {
    if offsets.is_empty() {
        return None;
    }
    let mut params = Vec::with_capacity(offsets.len() * 4);
    for p in offsets {
        params.extend([
            text(job),
            text(&p.topic),
            Value::Int(i64::from(p.partition)),
            Value::Int(p.offset),
        ]);
    }
    Some(Statement {
        sql: format!(
            "INSERT INTO stream_progress (job, topic, kafka_partition, next_offset) VALUES {} \
             ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset)",
            placeholders(offsets.len(), 4)
        ),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn e(p: u32, day: u32, v: i64) -> Evaluation {
        Evaluation {
            portfolio: p,
            date: chrono::NaiveDate::from_ymd_opt(2000, 1, day).unwrap_or_default(),
            value: Decimal::new(v, 2),
            change: None,
            change_pct: None,
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
        let (ins, del) = plan_rows(&diffs);
        assert_eq!(ins.len(), 2);
        assert_eq!(del.len(), 1);
        assert_eq!(del[0].0, 1);
    }

    #[test]
    fn statements_are_chunked_multi_row() {
        let u = Universe::spec();
        let rows: Vec<Evaluation> = (0..2500).map(|i| e(i % 6, 3, i64::from(i))).collect();
        let refs: Vec<&Evaluation> = rows.iter().collect();
        let stmts = upserts(&u, &refs);
        assert_eq!(stmts.len(), 3);
        assert_eq!(stmts[0].params.len(), CHUNK * 6);
        assert_eq!(stmts[0].sql.matches("(?, ?, ?, ?, ?, ?)").count(), CHUNK);
        assert!(progress("j", &[]).is_none());
    }
}
