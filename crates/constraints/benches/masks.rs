//! What a regex constraint costs on pycoder-16m's 8,192-token byte-level vocabulary: reading
//! the vocabulary and building its prefix tree (once per vocabulary), building the DFA, a mask
//! the first time its state is seen (cold: one pass over the vocabulary's prefix tree) and
//! afterwards (cached: a lookup and writing `-inf` into the row), a fork and an advance.
//!
//! Cold and cached masks are of the same state (after each pattern's prefix); the
//! cold one empties the cache first.
//!
//! ```text
//! cargo bench -p decoding-constraints --bench masks
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use decoding_constraints::{RegexConstraint, TokenBytes};
use decoding_core::ConstraintState;

const PATTERNS: [(&str, &str); 5] = [
    ("numbers", "[0-9]+(, [0-9]+)*"),
    (
        "identifiers",
        "[A-Za-z_][A-Za-z0-9_]*(, [A-Za-z_][A-Za-z0-9_]*)*\n",
    ),
    (
        "json",
        r#"\{"name": "[^"\\]*", "age": [0-9]{1,3}, "tags": \[("[a-z]+"(, "[a-z]+")*)?\]\}"#,
    ),
    ("any line", r"[^\n]*\n"),
    ("unicode words", r"\w+(, \w+)*"),
];

/// Text that each pattern accepts as a prefix, to walk into a state past the start.
const PREFIXES: [&str; 5] = [
    "12, 3",
    "alpha, be",
    r#"{"name": "Ada", "age": 3"#,
    "    return x",
    "naïve, wo",
];

fn masks(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/pycoder-16m/tokenizer.json"
    );
    let tokens = Arc::new(TokenBytes::from_tokenizer_file(path).unwrap());
    let vocab = tokens.len();
    let mut group = c.benchmark_group("vocabulary");
    group.sample_size(10);
    group.bench_function("read tokenizer.json", |b| {
        b.iter(|| TokenBytes::from_tokenizer_file(black_box(path)).unwrap())
    });
    // A fresh vocabulary's first constraint builds its prefix tree.
    group.bench_function("prefix tree and a one-byte pattern", |b| {
        b.iter(|| {
            let fresh = Arc::new(TokenBytes::new(tokens.iter()));
            RegexConstraint::new("a", fresh, [0]).unwrap()
        })
    });
    group.bench_function("a one-byte pattern", |b| {
        b.iter(|| RegexConstraint::new("a", tokens.clone(), [0]).unwrap())
    });
    group.finish();
    let mut group = c.benchmark_group("regex");
    group.sample_size(20);
    for ((name, pattern), prefix) in PATTERNS.iter().zip(PREFIXES) {
        let started = Instant::now();
        let constraint = RegexConstraint::new(pattern, tokens.clone(), [0]).unwrap();
        eprintln!(
            "{name}: DFA built in {:?}, {} bytes",
            started.elapsed(),
            constraint.dfa_bytes()
        );
        // The state after the prefix's bytes, one byte token at a time.
        let mut state = constraint.start_state(vocab).unwrap();
        for b in prefix.bytes() {
            let token = (0..vocab as u32)
                .find(|&t| tokens.get(t) == Some(&[b][..]))
                .unwrap();
            state.advance(token).unwrap();
        }
        let mut logits = vec![0.0f32; vocab];
        let mut probe = state.clone();
        probe.mask(&mut logits).unwrap();
        eprintln!(
            "{name}: {} tokens allowed after {prefix:?}",
            probe.allowed_count()
        );
        group.bench_function(format!("build/{name}"), |b| {
            b.iter(|| RegexConstraint::new(black_box(pattern), tokens.clone(), [0]).unwrap())
        });
        group.bench_function(format!("mask cold/{name}"), |b| {
            b.iter(|| {
                constraint.clear_cache();
                let mut fresh = state.clone();
                fresh.mask(black_box(&mut logits)).unwrap();
            })
        });
        group.bench_function(format!("mask cached/{name}"), |b| {
            b.iter(|| {
                let mut fresh = state.clone();
                fresh.mask(black_box(&mut logits)).unwrap();
            })
        });
        let next = (0..vocab as u32).find(|&t| probe.allows(t)).unwrap();
        group.bench_function(format!("fork+advance/{name}"), |b| {
            b.iter(|| {
                let mut fork = state.fork();
                fork.advance(black_box(next)).unwrap();
                fork
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masks);
criterion_main!(benches);
