//! Sinks for evaluation diffs (MySQL): see issue 4.
