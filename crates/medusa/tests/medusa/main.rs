//! Integration tests of the medusa crate: one binary, modules by concept.

mod accuracy;
mod common;
mod greedy;
mod heads_file;
mod sampling;
mod trees;
