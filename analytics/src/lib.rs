//! Batch analytics with Polars: see issue 5.
