//! Test helpers: a tiny vocabulary, independent matchers of its patterns, drafters, and the
//! vendored model and eval cases.

use std::path::PathBuf;
use std::sync::Arc;

use decoding_constraints::{RegexConstraint, TokenBytes};
use decoding_core::{
    DecodeError, DraftContext, SourceSet, StepFeedback, Strategy, Token, TokenTree,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The EOS of the tiny vocabulary.
pub(crate) const EOS: Token = 0;

/// A tiny vocabulary: the EOS, single bytes, two-byte tokens, and an id with no bytes.
pub(crate) fn tiny_vocab() -> Arc<TokenBytes> {
    Arc::new(TokenBytes::new(["", "a", "b", "ab", "", "ba", "c"]))
}

/// A pattern over the bytes `a`, `b`, `c` and an independent full-match test of it.
pub(crate) struct Pattern {
    pub(crate) regex: &'static str,
    pub(crate) full_match: fn(&[u8]) -> bool,
}

/// Whether `s` is a concatenation of `words` (a prefix-free set, so a greedy parse decides).
fn words(mut s: &[u8], words: &[&[u8]]) -> bool {
    while !s.is_empty() {
        match words.iter().find(|w| s.starts_with(w)) {
            Some(w) => s = &s[w.len()..],
            None => return false,
        }
    }
    true
}

pub(crate) const PATTERNS: [Pattern; 5] = [
    Pattern {
        regex: "a(b|ab)*",
        full_match: |s| s.first() == Some(&b'a') && words(&s[1..], &[b"b", b"ab"]),
    },
    Pattern {
        regex: "[ab]*c",
        full_match: |s| {
            s.last() == Some(&b'c') && s[..s.len() - 1].iter().all(|b| b"ab".contains(b))
        },
    },
    Pattern {
        regex: "c?(ab)+",
        full_match: |s| {
            let rest = s.strip_prefix(b"c").unwrap_or(s);
            !rest.is_empty() && words(rest, &[b"ab"])
        },
    },
    Pattern {
        regex: "(aa|ab|ba)*",
        full_match: |s| words(s, &[b"aa", b"ab", b"ba"]),
    },
    Pattern {
        regex: "(a|b)*bab(a|b)*",
        full_match: |s| s.iter().all(|b| b"ab".contains(b)) && s.windows(3).any(|w| w == b"bab"),
    },
];

/// Whether `text` is a prefix of a full match: some extension of at most 4 bytes of `a`, `b`,
/// `c` fully matches (enough for every pattern above).
pub(crate) fn is_prefix(pattern: &Pattern, text: &[u8]) -> bool {
    fn extend(pattern: &Pattern, text: &mut Vec<u8>, left: usize) -> bool {
        if (pattern.full_match)(text) {
            return true;
        }
        left > 0
            && b"abc".iter().any(|&b| {
                text.push(b);
                let found = extend(pattern, text, left - 1);
                text.pop();
                found
            })
    }
    extend(pattern, &mut text.to_vec(), 4)
}

/// The constraint of a tiny-vocabulary pattern, ended by [`EOS`].
pub(crate) fn constraint(pattern: &Pattern) -> RegexConstraint {
    RegexConstraint::new(pattern.regex, tiny_vocab(), [EOS]).unwrap()
}

/// Checks that `generated` obeys `pattern` on the tiny vocabulary: its text is a prefix of a
/// full match, and a full match if it ends with the EOS (which it holds at most once, last).
pub(crate) fn obeys(pattern: &Pattern, generated: &[Token]) -> Result<(), String> {
    let vocab = tiny_vocab();
    let (body, ended) = match generated.split_last() {
        Some((&EOS, body)) => (body, true),
        _ => (generated, false),
    };
    if body.contains(&EOS) {
        return Err(format!("{generated:?}: text after the eos"));
    }
    let text = vocab.decode(body).ok_or("token outside the vocabulary")?;
    if body
        .iter()
        .any(|&t| vocab.get(t).is_some_and(<[u8]>::is_empty))
    {
        return Err(format!("{generated:?}: a token with no bytes"));
    }
    let ok = if ended {
        (pattern.full_match)(&text)
    } else {
        is_prefix(pattern, &text)
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{generated:?} ({:?}, ended {ended}) breaks {}",
            String::from_utf8_lossy(&text),
            pattern.regex
        ))
    }
}

/// Drafts seeded random trees over the whole vocabulary (most of their tokens violate the
/// constraint): any draft must leave the output unchanged.
pub(crate) struct RandomDrafts {
    rng: Xoshiro256PlusPlus,
    max_nodes: usize,
    vocab: usize,
}

impl RandomDrafts {
    pub(crate) fn new(seed: u64, max_nodes: usize) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            max_nodes,
            vocab: 0,
        }
    }
}

impl Strategy for RandomDrafts {
    fn name(&self) -> &str {
        "random"
    }

    fn begin(&mut self, _prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        self.vocab = vocab_size;
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let target = self.rng.random_range(1..=self.max_nodes.min(ctx.max_nodes));
        for _attempt in 0..4 * target {
            if tree.len() >= target {
                break;
            }
            let parent = self.rng.random_range(0..tree.len());
            if tree.depth(parent) >= ctx.max_depth {
                continue;
            }
            let token = self.rng.random_range(0..self.vocab as Token);
            let logits = self.rng.random_bool(0.9);
            tree.push_with(parent, token, logits, SourceSet::EMPTY)?;
        }
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// Drafts a known continuation (say, the output of plain decoding with or without the
/// constraint), `depth` tokens deep: exercises long acceptances and, drafting the
/// unconstrained output, drafts the constraint must reject.
pub(crate) struct Oracle {
    pub(crate) continuation: Vec<Token>,
    pub(crate) depth: usize,
}

impl Strategy for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }

    fn begin(&mut self, _prompt: &[Token], _vocab_size: usize) -> Result<(), DecodeError> {
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        let done = ctx.generated().len();
        let take = self.depth.min(ctx.max_depth).min(ctx.max_nodes - 1);
        let end = (done + take).min(self.continuation.len());
        let next = &self.continuation[done.min(end)..end];
        tree.extend_chain(0, next, true, SourceSet::EMPTY)?;
        Ok(())
    }

    fn observe(&mut self, _feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// The workspace's assets directory.
pub(crate) fn assets() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets"))
}

/// One dev eval case.
pub(crate) struct Case {
    pub(crate) id: String,
    pub(crate) prompt: Vec<Token>,
    pub(crate) references: Vec<Vec<Token>>,
}

/// The dev eval cases (`assets/eval/dev_eval.json` stores prompts as token ids).
pub(crate) fn dev_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(assets().join("eval/dev_eval.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<Token> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as Token)
            .collect()
    };
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| Case {
            id: case["id"].as_str().unwrap().to_string(),
            prompt: ids(&case["prompt_ids"]),
            references: case["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect(),
        })
        .collect()
}
