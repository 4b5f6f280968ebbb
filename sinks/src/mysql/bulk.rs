//! Bulk writes: a table's rows streamed to the server with `LOAD DATA LOCAL INFILE`, from
//! memory, inside the batch's transaction.
//!
//! The rows are encoded once per batch straight into one byte buffer ([`Rows`]: the server's
//! default text format, tab-separated, `\N` for NULL, no `String` per value), and the
//! connection serves that buffer, and only it, when the server asks for the statement's
//! stream name: no file on disk, no FILE privilege, and a server asking for anything else gets
//! an error, not a file. The statement text of a table never changes (one shape, whatever the
//! row count), and the stream goes in packets of its own, so no batch is too large for the
//! server's `max_allowed_packet`.
//!
//! `LOAD DATA LOCAL` turns the errors strict mode would raise into warnings (the server cannot
//! stop a client's stream midway), so every load checks the server's answer: every row
//! accepted, no warning, or the load is an error about the data ([`Error::Refused`]) and the
//! transaction is rolled back by the caller, which writes the batch row by row instead.

use crate::{Error, Result};
use chrono::{Datelike, NaiveDate};
use mysql::prelude::Queryable;
use mysql::LocalInfileHandler;
use std::io::Write;
use std::sync::Arc;
use stockflow_core::Money;

/// A table a batch loads, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub table: &'static str,
    /// The columns the rows carry, in order.
    pub columns: &'static str,
    /// A row whose key exists replaces it (every column the table's upsert would set is in
    /// the row); otherwise such a row is an error (a benchmark's plain load).
    pub replace: bool,
}

impl Target {
    /// The name the statement asks the client's stream for (the client serves nothing else).
    fn stream(&self) -> String {
        format!("stockflow-stream/{}", self.table)
    }

    /// The statement: one text per table.
    pub fn sql(&self) -> String {
        format!(
            "LOAD DATA LOCAL INFILE '{}' {}INTO TABLE {} CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
            self.stream(),
            if self.replace { "REPLACE " } else { "" },
            self.table,
            self.columns
        )
    }
}

pub const EVALUATIONS: Target = Target {
    table: "evaluations",
    columns: "investor, portfolio, as_of, nav, nav_change, nav_change_pct",
    replace: true,
};
pub const ISSUES: Target = Target {
    table: "evaluation_issues",
    columns: "portfolio, as_of, kind, held, priced",
    replace: true,
};
pub const PRICES: Target = Target {
    table: "prices",
    columns: "ticker, as_of, price, version_ts, version_partition, version_offset",
    replace: true,
};
pub const HOLDINGS: Target = Target {
    table: "holding_records",
    columns: "portfolio, ticker, from_day, quantity, version_ts, version_partition, version_offset",
    replace: true,
};
pub const JOURNAL: Target = Target {
    table: "evaluation_changes",
    columns: "job, commit_seq, n, investor, portfolio, as_of, diff, restated, nav, nav_change, \
              nav_change_pct",
    replace: true,
};

/// Rows in the server's default `LOAD DATA` text format, encoded as they are added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    buf: Vec<u8>,
    rows: usize,
    in_row: bool,
}

impl Rows {
    pub fn with_capacity(bytes: usize) -> Self {
        Rows {
            buf: Vec::with_capacity(bytes),
            ..Rows::default()
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn field(&mut self) -> &mut Vec<u8> {
        if self.in_row {
            self.buf.push(b'\t');
        }
        self.in_row = true;
        &mut self.buf
    }

    /// A text field (escaped: backslash, tab, newline, carriage return and NUL).
    pub fn text(&mut self, s: &str) -> &mut Self {
        let out = self.field();
        for &b in s.as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0 => out.extend_from_slice(b"\\0"),
                _ => out.push(b),
            }
        }
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.field().extend_from_slice(b"\\N");
        self
    }

    /// An amount with its six decimals (`DECIMAL(…, 6)` columns): exact.
    pub fn money(&mut self, m: Money) -> &mut Self {
        m.write_fixed(self.field());
        self
    }

    pub fn opt_money(&mut self, m: Option<Money>) -> &mut Self {
        match m {
            Some(m) => self.money(m),
            None => self.null(),
        }
    }

    pub fn int(&mut self, n: i64) -> &mut Self {
        let _ = write!(self.field(), "{n}");
        self
    }

    pub fn uint(&mut self, n: u64) -> &mut Self {
        let _ = write!(self.field(), "{n}");
        self
    }

    /// A date as `YYYY-MM-DD`.
    pub fn date(&mut self, d: NaiveDate) -> &mut Self {
        let out = self.field();
        match u32::try_from(d.year()) {
            Ok(y) if y <= 9999 => {
                let digits = [
                    y / 1000,
                    y / 100 % 10,
                    y / 10 % 10,
                    y % 10,
                    10,
                    d.month() / 10,
                    d.month() % 10,
                    10,
                    d.day() / 10,
                    d.day() % 10,
                ];
                out.extend(
                    digits
                        .iter()
                        .map(|&x| if x == 10 { b'-' } else { b'0' + x as u8 }),
                );
            }
            // Outside the contract's years: chrono's own text, which the column refuses.
            _ => {
                let _ = write!(out, "{d}");
            }
        }
        self
    }

    /// Ends the current row.
    pub fn end(&mut self) {
        self.buf.push(b'\n');
        self.rows += 1;
        self.in_row = false;
    }

    /// The rows, ready to be served (shared by every attempt at the batch).
    pub fn finish(self) -> Stream {
        Stream {
            data: Arc::new(self.buf),
            rows: self.rows,
        }
    }
}

/// Encoded rows, served to the server as many times as the batch is tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    data: Arc<Vec<u8>>,
    rows: usize,
}

impl Stream {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// The counts in a `LOAD DATA` answer: `Records: 3  Deleted: 0  Skipped: 0  Warnings: 0`.
fn answer_count(info: &str, name: &str) -> Option<u64> {
    let at = info.find(name)? + name.len();
    let rest = info[at..].trim_start_matches([':', ' ']);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Loads `stream` into `target` inside `tx`. Every row must be accepted without a warning;
/// otherwise [`Error::Refused`] (a data error: the caller rolls back).
pub fn load(tx: &mut mysql::Transaction<'_>, target: &Target, stream: &Stream) -> Result<()> {
    if stream.rows == 0 {
        return Ok(());
    }
    let name = target.stream();
    let data = Arc::clone(&stream.data);
    tx.set_local_infile_handler(Some(LocalInfileHandler::new(move |asked, out| {
        if asked != name.as_bytes() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the server asked for {:?}; stockflow serves only its own stream {name:?}",
                    String::from_utf8_lossy(asked)
                ),
            ));
        }
        out.write_all(&data)
    })));
    let started = std::time::Instant::now();
    let sent = tx.query_drop(target.sql());
    tx.set_local_infile_handler(None);
    sent?;
    tracing::debug!(
        table = target.table,
        rows = stream.rows,
        bytes = stream.data.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "bulk load"
    );
    let (warnings, info) = (tx.warnings(), tx.info_str().into_owned());
    let records = answer_count(&info, "Records");
    let skipped = answer_count(&info, "Skipped").unwrap_or(0);
    let expected = stream.rows as u64;
    if warnings == 0 && skipped == 0 && records.is_none_or(|r| r == expected) {
        return Ok(());
    }
    let shown: Vec<(String, u32, String)> = tx.query("SHOW WARNINGS LIMIT 3")?;
    let detail = shown
        .iter()
        .map(|(level, code, message)| format!("{level} {code}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::Refused {
        table: target.table,
        detail: format!(
            "{} of {expected} rows sent; server: {info:?}; {detail}",
            records.map_or_else(|| "?".to_string(), |r| r.to_string())
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_the_servers_default_text_format() {
        let mut r = Rows::default();
        r.text("a\tb\\c\nd\r\0")
            .null()
            .money(Money::from_units(-1_500_000))
            .int(-7)
            .uint(u64::MAX)
            .date(NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"));
        r.end();
        r.date(NaiveDate::from_ymd_opt(2000, 1, 3).expect("a date"))
            .opt_money(None)
            .opt_money(Some(Money::from_units(1)));
        r.end();
        assert_eq!(r.len(), 2);
        assert_eq!(
            String::from_utf8(r.bytes().to_vec()).expect("utf-8"),
            "a\\tb\\\\c\\nd\\r\\0\t\\N\t-1.500000\t-7\t18446744073709551615\t9999-12-31\n\
             2000-01-03\t\\N\t0.000001\n"
        );
    }

    #[test]
    fn the_statement_names_its_stream_and_columns() {
        assert_eq!(
            EVALUATIONS.sql(),
            "LOAD DATA LOCAL INFILE 'stockflow-stream/evaluations' REPLACE INTO TABLE evaluations \
             CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED \
             BY '\\n' (investor, portfolio, as_of, nav, nav_change, nav_change_pct)"
        );
    }

    #[test]
    fn the_answer_is_read() {
        let info = "Records: 3  Deleted: 1  Skipped: 0  Warnings: 2";
        assert_eq!(answer_count(info, "Records"), Some(3));
        assert_eq!(answer_count(info, "Deleted"), Some(1));
        assert_eq!(answer_count(info, "Warnings"), Some(2));
        assert_eq!(answer_count("", "Records"), None);
    }
}
