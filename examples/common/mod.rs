//! Code shared by the examples: eval cases and results, the report table, CPU time.

pub(crate) mod cost;
pub(crate) mod cpu;
pub(crate) mod engine;
pub(crate) mod eval_data;
pub(crate) mod report;
pub(crate) mod run_args;
