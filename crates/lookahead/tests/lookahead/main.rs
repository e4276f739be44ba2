//! Integration tests of the lookahead crate: one binary, modules by concept.

mod common;
mod enumerate;
mod greedy;
mod limits;
mod pool;
mod sampling;
