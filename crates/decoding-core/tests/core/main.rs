//! Integration tests of decoding-core: one binary, modules by concept.

mod common;
mod decode;
