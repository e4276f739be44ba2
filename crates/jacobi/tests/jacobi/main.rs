//! Integration tests of the jacobi crate: one binary, modules by concept.

mod common;
mod greedy;
mod sampling;
