//! Integration tests of the lookahead crate: one binary, modules by concept.

mod common;
mod enumerate;
mod greedy;
mod pool;
mod sampling;
