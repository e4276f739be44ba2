//! Code shared by the examples: eval cases and results, the report table, CPU time, how
//! errors end a run.

pub(crate) mod cost;
pub(crate) mod cpu;
pub(crate) mod engine;
pub(crate) mod eval_data;
pub(crate) mod exit;
pub(crate) mod report;
pub(crate) mod run_args;
