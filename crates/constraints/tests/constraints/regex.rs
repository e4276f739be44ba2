//! The regex constraint against independent matchers: which texts it accepts, which tokens
//! each state allows, forks, the mask cache, and its errors.

use std::sync::Arc;

use decoding_constraints::{RegexConstraint, RegexError, RegexOptions, TokenBytes};
use decoding_core::{
    Constraint, ConstraintError, ConstraintState, DecodeConfig, DecodeError, Plain, Token, generate,
};
use decoding_testkit::toy::HashModel;
use proptest::prelude::*;

use crate::common::{EOS, PATTERNS, constraint, is_prefix, tiny_vocab};

/// Every string of `a`, `b`, `c` up to `len` bytes.
fn all_strings(len: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut layer = vec![Vec::new()];
    for _ in 0..len {
        layer = layer
            .iter()
            .flat_map(|s: &Vec<u8>| {
                b"abc".iter().map(move |&b| {
                    let mut t = s.clone();
                    t.push(b);
                    t
                })
            })
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

#[test]
fn full_matches_and_prefixes_agree_with_the_oracles() {
    for pattern in &PATTERNS {
        let c = constraint(pattern);
        for text in all_strings(6) {
            assert_eq!(c.is_match(&text), (pattern.full_match)(&text), "{text:?}");
            assert_eq!(c.is_prefix(&text), is_prefix(pattern, &text), "{text:?}");
        }
    }
}

/// Whether the oracle allows `token` after `text`.
fn oracle_allows(pattern: usize, text: &[u8], ended: bool, token: Token) -> bool {
    let p = &PATTERNS[pattern];
    if token == EOS {
        return ended || (p.full_match)(text);
    }
    let vocab = tiny_vocab();
    let bytes = vocab.get(token).unwrap();
    let mut longer = text.to_vec();
    longer.extend_from_slice(bytes);
    !ended && !bytes.is_empty() && is_prefix(p, &longer)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Walking random allowed tokens, every state's mask, `allows` and `advance` agree with
    /// the oracle for every token; forks taken on the way stay where they were.
    #[test]
    fn masks_allows_and_advance_agree_with_the_oracle(
        pattern in 0..PATTERNS.len(), choices in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let c = constraint(&PATTERNS[pattern]);
        let vocab = tiny_vocab();
        let mut state = c.start(&[3, 1], 7).unwrap();
        let mut text = Vec::new();
        let mut ended = false;
        let mut forks: Vec<(Box<dyn ConstraintState>, Vec<f32>)> = Vec::new();
        for choice in choices {
            let mut logits = vec![0.0f32; 7];
            let masked = state.mask(&mut logits);
            let allowed: Vec<Token> = (0..7).filter(|&t| oracle_allows(pattern, &text, ended, t)).collect();
            if allowed.is_empty() {
                prop_assert!(matches!(masked, Err(ConstraintError::NothingAllowed)));
                break;
            }
            masked.unwrap();
            for t in 0..7 {
                let expected = allowed.contains(&t);
                prop_assert_eq!(logits[t as usize] == 0.0, expected, "mask, token {}", t);
                prop_assert_eq!(state.allows(t), expected, "allows, token {}", t);
                let mut fresh = state.fork();
                prop_assert_eq!(fresh.allows(t), expected, "allows before a mask, token {}", t);
                prop_assert_eq!(fresh.advance(t).is_ok(), expected, "advance, token {}", t);
            }
            forks.push((state.fork(), logits));
            let token = allowed[choice.index(allowed.len())];
            state.advance(token).unwrap();
            if token == EOS {
                ended = true;
            } else {
                text.extend_from_slice(vocab.get(token).unwrap());
            }
        }
        for (mut fork, logits) in forks {
            let mut again = vec![0.0f32; 7];
            fork.mask(&mut again).unwrap();
            prop_assert_eq!(again, logits);
        }
    }
}

#[test]
fn a_refused_token_leaves_the_state_as_it_was() {
    let c = constraint(&PATTERNS[0]); // a(b|ab)*
    let mut state = c.start_state(7).unwrap();
    state.advance(1).unwrap(); // "a"
    let err = state.advance(6).unwrap_err(); // "c"
    assert!(
        matches!(err, ConstraintError::NotAllowed { token: 6 }),
        "{err}"
    );
    assert!(!state.allows(4), "a token with no bytes is never allowed");
    assert!(state.is_complete() && !state.is_ended());
    state.advance(EOS).unwrap();
    assert!(state.is_ended());
    // After the EOS only the EOS.
    let mut logits = vec![0.0f32; 7];
    state.mask(&mut logits).unwrap();
    assert_eq!(state.allowed_count(), 1);
    assert!(logits[1..].iter().all(|&x| x == f32::NEG_INFINITY));
    assert!(state.advance(1).is_err());
    state.advance(EOS).unwrap();
}

#[test]
fn masks_are_computed_once_per_state_and_shared_by_forks() {
    let c = constraint(&PATTERNS[3]); // (aa|ab|ba)*: two DFA states on the way
    let mut logits = vec![0.0f32; 7];
    let mut state = c.start_state(7).unwrap();
    for _ in 0..3 {
        let mut branch = state.fork();
        branch.mask(&mut logits).unwrap();
        branch.advance(1).unwrap(); // "a"
        branch.mask(&mut logits).unwrap();
        branch.advance(1).unwrap(); // "aa": back at an even position
        branch.mask(&mut logits).unwrap();
    }
    state.mask(&mut logits).unwrap();
    let stats = c.cache_stats();
    // The start state, "a", and "aa" (the DFA may tell the start from "aa").
    assert!(
        stats.misses <= 3 && stats.cached as u64 == stats.misses,
        "{stats:?}"
    );
    assert_eq!(stats.hits + stats.misses, 10, "{stats:?}");
    c.clear_cache();
    assert_eq!(c.cache_stats().cached, 0);
}

#[test]
fn a_full_cache_evicts_and_stays_correct() {
    let options = RegexOptions::default().with_cache_bytes(1);
    let c = RegexConstraint::with_options(PATTERNS[2].regex, tiny_vocab(), [EOS], options).unwrap();
    let walk = |c: &RegexConstraint| {
        let mut state = c.start_state(7).unwrap();
        let mut masks = Vec::new();
        for token in [6, 1, 2, 3, 3] {
            let mut logits = vec![0.0f32; 7];
            state.mask(&mut logits).unwrap();
            masks.push(logits);
            state.advance(token).unwrap();
        }
        masks
    };
    let bounded = walk(&c);
    let stats = c.cache_stats();
    assert_eq!(stats.cached, 1);
    assert!(stats.evictions > 0);
    assert_eq!(bounded, walk(&constraint(&PATTERNS[2])));
}

#[test]
fn the_decoder_reports_a_dead_end() {
    // "ab" and no EOS: after "ab" nothing may follow.
    let c = RegexConstraint::new("ab", tiny_vocab(), []).unwrap();
    let config = DecodeConfig::new(4).with_constraint(c);
    let mut model = HashModel::new(7, 1);
    let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
    let err = generate(&mut model, Plain, &[1], &config, &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Constraint(ConstraintError::NothingAllowed)
        ),
        "{err}"
    );
}

#[test]
fn bytes_inside_a_character_are_allowed_while_it_can_complete() {
    let e = "é".as_bytes(); // C3 A9
    let vocab = Arc::new(TokenBytes::new([&b""[..], &e[..1], &e[1..], e, b"e"]));
    let c = RegexConstraint::new("é+", vocab, [0]).unwrap();
    let mut state = c.start_state(5).unwrap();
    let allowed = |s: &mut decoding_constraints::RegexState| -> Vec<Token> {
        (0..5).filter(|&t| s.allows(t)).collect()
    };
    assert_eq!(allowed(&mut state), [1, 3]);
    state.advance(1).unwrap();
    assert_eq!(allowed(&mut state), [2]);
    state.advance(2).unwrap();
    assert_eq!(allowed(&mut state), [0, 1, 3]);
}

#[test]
fn a_larger_model_vocabulary_masks_the_ids_without_bytes() {
    let c = constraint(&PATTERNS[1]);
    let mut state = c.start(&[1], 10).unwrap();
    let mut logits = vec![0.0f32; 10];
    state.mask(&mut logits).unwrap();
    let kept: Vec<usize> = (0..10).filter(|&i| logits[i] == 0.0).collect();
    assert_eq!(kept, [1, 2, 3, 5, 6]);
    let err = state.mask(&mut [0.0; 7]).unwrap_err();
    assert!(matches!(err, ConstraintError::Other(_)), "{err}");
    let err = c.start(&[1], 6).unwrap_err();
    assert!(matches!(err, ConstraintError::Start(_)), "{err}");
}

#[test]
fn bad_patterns_and_eos_are_clear_errors() {
    let vocab = tiny_vocab();
    let err = RegexConstraint::new("(ab", vocab.clone(), [EOS]).unwrap_err();
    assert!(matches!(err, RegexError::Pattern { .. }), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    // The DFA does not support Unicode word boundaries.
    let err = RegexConstraint::new(r"\bab", vocab.clone(), [EOS]).unwrap_err();
    assert!(matches!(err, RegexError::Pattern { .. }), "{err}");
    RegexConstraint::new(r"(?-u:\b)ab", vocab.clone(), [EOS]).unwrap();
    let small = RegexOptions::default().with_size_limit(20_000);
    let err =
        RegexConstraint::with_options("[a-c]{4000}", vocab.clone(), [EOS], small).unwrap_err();
    assert!(
        matches!(err, RegexError::TooLarge { limit: 20_000, .. }),
        "{err}"
    );
    let err = RegexConstraint::with_options(r"\w{40}", vocab.clone(), [EOS], small).unwrap_err();
    assert!(matches!(err, RegexError::TooLarge { .. }), "{err}");
    let err = RegexConstraint::new("a", vocab.clone(), [7]).unwrap_err();
    assert!(
        matches!(
            err,
            RegexError::EosOutOfVocab {
                token: 7,
                vocab_size: 7
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "eos token 7 is outside the vocabulary of 7 tokens"
    );
}

#[test]
fn an_eos_with_bytes_counts_as_an_eos_only() {
    // Token 6 ("c") is declared the EOS: it ends a full match and is never text.
    let c = RegexConstraint::new("a*c?", tiny_vocab(), [6]).unwrap();
    let mut state = c.start_state(7).unwrap();
    assert!(state.allows(6), "the empty text is a full match");
    state.advance(1).unwrap();
    state.advance(6).unwrap();
    assert!(state.is_ended());
    let c = RegexConstraint::new("a+", tiny_vocab(), [6]).unwrap();
    assert!(!c.start_state(7).unwrap().allows(6));
}

#[test]
fn one_of_takes_its_choices_literally() {
    let vocab = Arc::new(TokenBytes::new([
        "", "yes", "no", "y", "es", "n", "o", ".", "maybe",
    ]));
    let c = RegexConstraint::one_of(["yes", "no", "y.es"], vocab.clone(), [0]).unwrap();
    let mut state = c.start_state(9).unwrap();
    let allowed = |s: &mut decoding_constraints::RegexState| -> Vec<Token> {
        (0..9).filter(|&t| s.allows(t)).collect()
    };
    assert_eq!(allowed(&mut state), [1, 2, 3, 5]);
    state.advance(3).unwrap(); // "y"
    // "o" would be allowed if "." were a pattern.
    assert_eq!(allowed(&mut state), [4, 7]);
    assert!(c.is_match(b"y.es") && !c.is_match(b"yxes") && !c.is_match(b"maybe"));
    let none = RegexConstraint::one_of(Vec::<String>::new(), vocab, [0]).unwrap();
    let err = none
        .start_state(9)
        .unwrap()
        .mask(&mut [0.0; 9])
        .unwrap_err();
    assert!(matches!(err, ConstraintError::NothingAllowed), "{err}");
}
