//! The dataflow job (timely + differential dataflow): see issue 3.
