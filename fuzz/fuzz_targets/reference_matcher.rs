//! The reference matcher (suffix automata over the reference documents and over the growing
//! context) against brute force.
//!
//! Arbitrary documents (empty ones included, small alphabets so matches are long, tokens near
//! `u32::MAX` now and then) and an arbitrary sequence of `push`, `extend`, `reset`, clones and
//! queries. After every change the longest match in the references and earlier in the
//! context must be the brute-force longest common suffix; queries check `occurrences` (every
//! occurrence of every suffix down to `min_len`, each once with its exact match length,
//! longest first, capped queries keeping the longest), `first_occurrence` (the smallest end
//! position) and `continuation` (the tokens after an occurrence, up to its document's end;
//! periodic continuation of context occurrences) against the definitions; the index's own
//! accessors against the concatenated documents.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use decoding_core::Token;
use libfuzzer_sys::fuzz_target;
use parallel_decoding_fuzz::text::{self, Occ};
use reference::{Matcher, Occurrence, OccurrenceQuery, ReferenceIndex, Source};

struct Setup {
    docs: Vec<Vec<Token>>,
    alphabet: Token,
    big: bool,
}

impl Setup {
    fn token(&self, u: &mut Unstructured<'_>) -> Result<Token> {
        let t = u.int_in_range(0..=self.alphabet - 1)?;
        Ok(if self.big { u32::MAX - t } else { t })
    }
}

fn key(o: &Occurrence) -> Occ {
    (o.source == Source::Context, o.end, o.match_len)
}

fn check_matches(m: &Matcher, setup: &Setup, context: &[Token]) -> BTreeSet<Occ> {
    assert_eq!(m.context(), context);
    let all = text::occurrences(&setup.docs, context);
    let (refs, ctx) = (text::longest(&all, false), text::longest(&all, true));
    assert_eq!(m.reference_match(), refs, "reference match of {context:?}");
    assert_eq!(m.context_match(), ctx, "context match of {context:?}");
    assert_eq!(m.longest_match(), refs.max(ctx));
    all
}

fn check_queries(
    u: &mut Unstructured<'_>,
    m: &mut Matcher,
    setup: &Setup,
    context: &[Token],
) -> Result<()> {
    let all = check_matches(m, setup, context);
    for (source, in_context) in [(Source::Reference, false), (Source::Context, true)] {
        for len in 0..=m.longest_match() + 1 {
            let first = all
                .iter()
                .filter(|o| o.0 == in_context && o.2 >= len && len > 0)
                .map(|o| o.1)
                .min();
            let got = m.first_occurrence(source, len);
            assert_eq!(
                got.map(|o| o.end),
                first,
                "first occurrence of length {len} in {source:?}"
            );
            if let Some(o) = got {
                assert_eq!((o.source, o.match_len), (source, len));
            }
        }
    }
    let query = OccurrenceQuery {
        references: u.ratio(3, 4)?,
        context: u.ratio(3, 4)?,
        min_len: u.int_in_range(0..=4)?,
        max_occurrences: if u.arbitrary()? {
            usize::MAX
        } else {
            u.int_in_range(0..=12)?
        },
    };
    let expected: BTreeSet<Occ> = all
        .iter()
        .copied()
        .filter(|o| {
            o.2 >= query.min_len.max(1) && if o.0 { query.context } else { query.references }
        })
        .collect();
    // `occurrences` appends: keep a sentinel in front.
    let sentinel = Occurrence {
        source: Source::Reference,
        end: usize::MAX,
        match_len: 0,
    };
    let mut out = vec![sentinel];
    m.occurrences(&query, &mut out);
    assert_eq!(out[0], sentinel);
    let got_list = &out[1..];
    let got: BTreeSet<Occ> = got_list.iter().map(key).collect();
    assert_eq!(
        got.len(),
        got_list.len(),
        "an occurrence listed twice: {got_list:?}"
    );
    assert!(got.is_subset(&expected), "{got:?} not all in {expected:?}");
    assert_eq!(got.len(), query.max_occurrences.min(expected.len()));
    assert!(
        got_list
            .windows(2)
            .all(|w| w[0].match_len >= w[1].match_len),
        "not longest first: {got_list:?}"
    );
    let shortest_kept = got.iter().map(|o| o.2).min().unwrap_or(usize::MAX);
    let longest_left = expected.difference(&got).map(|o| o.2).max().unwrap_or(0);
    assert!(
        shortest_kept >= longest_left,
        "a capped query dropped a longer match"
    );
    // What follows each occurrence.
    let periodic = u.arbitrary()?;
    for o in got_list {
        for depth in 0..context.len() + 4 {
            assert_eq!(
                m.continuation(o, depth, periodic),
                text::continuation(&setup.docs, context, key(o), depth, periodic),
                "continuation of {o:?} at depth {depth} (periodic: {periodic})"
            );
        }
    }
    Ok(())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let alphabet = u.int_in_range(1..=5)?;
    let big = u.ratio(1, 8)?;
    let mut setup = Setup {
        docs: Vec::new(),
        alphabet,
        big,
    };
    for _ in 0..u.int_in_range(0..=4)? {
        let len = u.int_in_range(0..=24)?;
        let doc = (0..len).map(|_| setup.token(u)).collect::<Result<_>>()?;
        setup.docs.push(doc);
    }
    let index = Arc::new(ReferenceIndex::new(&setup.docs));
    let concat: Vec<Token> = setup.docs.concat();
    assert_eq!(
        index.documents(),
        setup.docs.iter().filter(|d| !d.is_empty()).count()
    );
    assert_eq!(
        (index.tokens(), index.is_empty()),
        (concat.len(), concat.is_empty())
    );
    for (pos, &t) in concat.iter().enumerate() {
        assert_eq!(index.token(pos), t);
        assert_eq!(
            index.continuation(pos),
            text::doc_continuation(&setup.docs, pos)
        );
    }

    let mut m = Matcher::new(index.clone());
    assert!(Arc::ptr_eq(m.index(), &index));
    let mut context: Vec<Token> = Vec::new();
    let mut saved: Option<(Matcher, Vec<Token>)> = None;
    for _ in 0..80 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0u8..=15)? {
            0..=8 => {
                let t = setup.token(u)?;
                m.push(t);
                context.push(t);
            }
            9 => {
                let tokens: Vec<Token> = (0..u.int_in_range(0..=8)?)
                    .map(|_| setup.token(u))
                    .collect::<Result<_>>()?;
                m.extend(&tokens);
                context.extend(&tokens);
            }
            10 => {
                if u.ratio(1, 3)? {
                    m.reset();
                    context.clear();
                }
            }
            11 => {
                // A fork: the clone goes on, the original is checked at the end.
                saved = Some((m.clone(), context.clone()));
            }
            _ => check_queries(u, &mut m, &setup, &context)?,
        }
        check_matches(&m, &setup, &context);
    }
    if let Some((mut old, old_context)) = saved {
        check_queries(u, &mut old, &setup, &old_context)?;
    }
    check_queries(u, &mut m, &setup, &context)
}

fuzz_target!(|data: &[u8]| {
    let data = parallel_decoding_fuzz::input(data);
    let _ = run(&mut Unstructured::new(&data));
});
