//! Code shared by the examples: eval cases and results, and the report table.

pub(crate) mod eval_data;
pub(crate) mod report;
