//! Migrations that fail when any of their statements fails.
//!
//! refinery's MySQL driver runs a migration's text with `query_iter` and drops the result:
//! an error in any statement after the first (a lock wait that timed out in the third of
//! `SET`/`PREPARE`/`EXECUTE`) is read and thrown away by the result's `Drop`, and the
//! migration is recorded as applied though it was not. [`Checked`] runs the same texts and
//! reads every result set of every statement, so that such an error fails the migration
//! (nothing is recorded) and is returned.

use mysql::prelude::Queryable;
use mysql::{Conn, IsolationLevel, TxOpts};
use refinery_core::traits::sync::{Migrate, Query, Transaction};
use refinery_core::Migration;

/// A connection whose migrations check every statement's result.
pub struct Checked<'a>(pub &'a mut Conn);

/// Runs `sql` (one or more statements) and reads every result, failing on the first error.
pub fn run_all(q: &mut impl Queryable, sql: &str) -> mysql::Result<()> {
    let mut result = q.query_iter(sql)?;
    while let Some(set) = result.iter() {
        for row in set {
            row?;
        }
    }
    Ok(())
}

impl Transaction for Checked<'_> {
    type Error = mysql::Error;

    fn execute<'a, T: Iterator<Item = &'a str>>(
        &mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        // As refinery's driver: one transaction (DDL commits on its own in MySQL).
        let mut tx = self.0.start_transaction(
            TxOpts::default()
                .set_with_consistent_snapshot(true)
                .set_isolation_level(Some(IsolationLevel::RepeatableRead)),
        )?;
        let mut count = 0;
        for query in queries {
            run_all(&mut tx, query)?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }
}

impl Query<Vec<Migration>> for Checked<'_> {
    fn query(&mut self, query: &str) -> Result<Vec<Migration>, Self::Error> {
        <Conn as Query<Vec<Migration>>>::query(self.0, query)
    }
}

impl Migrate for Checked<'_> {}
