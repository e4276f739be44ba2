//! Integration tests of the reference crate: the matcher against brute force, and decoding
//! against plain decoding.

mod decode;
mod matcher;
