//! Integration tests of decoding-core: one binary, modules by concept.

mod batch;
mod common;
mod composite;
mod decode;
mod errors;
mod models;
mod regressions;
mod target;
mod trees;
mod verification;
