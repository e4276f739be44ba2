//! Integration tests of decoding-constraints: one binary, modules by concept.

mod common;
mod exactness;
mod real_model;
mod regex;
mod rollback;
mod tokenizer;
