//! The matcher returns the true longest matches and every occurrence (brute force).

use std::collections::BTreeSet;
use std::sync::Arc;

use decoding_core::Token;
use proptest::prelude::*;
use reference::{Matcher, Occurrence, OccurrenceQuery, ReferenceIndex, Source};

/// Longest common suffix of `a` and `b`.
fn common_suffix(a: &[Token], b: &[Token]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Every earlier occurrence of a suffix of `context` with its exact match length.
fn brute_occurrences(docs: &[Vec<Token>], context: &[Token]) -> BTreeSet<(bool, usize, usize)> {
    let mut out = BTreeSet::new();
    let mut offset = 0;
    for doc in docs.iter().filter(|d| !d.is_empty()) {
        for end in 0..doc.len() {
            let len = common_suffix(&doc[..=end], context);
            if len > 0 {
                out.insert((false, offset + end, len));
            }
        }
        offset += doc.len();
    }
    for end in 0..context.len().saturating_sub(1) {
        let len = common_suffix(&context[..=end], context);
        if len > 0 {
            out.insert((true, end, len));
        }
    }
    out
}

fn key(o: &Occurrence) -> (bool, usize, usize) {
    (o.source == Source::Context, o.end, o.match_len)
}

fn docs_strategy(alphabet: u32) -> impl Strategy<Value = Vec<Vec<Token>>> {
    prop::collection::vec(prop::collection::vec(0..alphabet, 0..24), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn longest_matches_equal_brute_force(
        alphabet in 1u32..5, docs in docs_strategy(4),
        pushes in prop::collection::vec(0u32..5, 1..60),
    ) {
        let docs: Vec<Vec<Token>> =
            docs.into_iter().map(|d| d.into_iter().map(|t| t % alphabet).collect()).collect();
        let mut m = Matcher::new(Arc::new(ReferenceIndex::new(&docs)));
        let mut context = Vec::new();
        for t in pushes {
            let t = t % alphabet;
            m.push(t);
            context.push(t);
            let brute = brute_occurrences(&docs, &context);
            let best = |ctx: bool| brute.iter().filter(|o| o.0 == ctx).map(|o| o.2).max();
            prop_assert_eq!(m.reference_match(), best(false).unwrap_or(0));
            prop_assert_eq!(m.context_match(), best(true).unwrap_or(0));
            prop_assert_eq!(m.longest_match(), best(false).max(best(true)).unwrap_or(0));
            for (source, ctx) in [(Source::Reference, false), (Source::Context, true)] {
                for len in 1..=m.longest_match() + 1 {
                    let first = brute
                        .iter()
                        .filter(|o| o.0 == ctx && o.2 >= len)
                        .map(|o| o.1)
                        .min();
                    let got = m.first_occurrence(source, len).map(|o| o.end);
                    prop_assert_eq!(got, first, "source {:?} len {}", source, len);
                }
            }
        }
    }

    #[test]
    fn occurrences_are_every_occurrence_longest_first(
        alphabet in 1u32..4, docs in docs_strategy(3),
        context in prop::collection::vec(0u32..3, 1..50),
        references in any::<bool>(), in_context in any::<bool>(),
        min_len in 1usize..4, cap in 1usize..12,
    ) {
        let docs: Vec<Vec<Token>> =
            docs.into_iter().map(|d| d.into_iter().map(|t| t % alphabet).collect()).collect();
        let context: Vec<Token> = context.into_iter().map(|t| t % alphabet).collect();
        let mut m = Matcher::new(Arc::new(ReferenceIndex::new(&docs)));
        m.extend(&context);
        let expected: BTreeSet<_> = brute_occurrences(&docs, &context)
            .into_iter()
            .filter(|o| o.2 >= min_len && if o.0 { in_context } else { references })
            .collect();
        let mut query = OccurrenceQuery {
            references,
            context: in_context,
            min_len,
            max_occurrences: usize::MAX,
        };
        let mut all = Vec::new();
        m.occurrences(&query, &mut all);
        let got: BTreeSet<_> = all.iter().map(key).collect();
        prop_assert_eq!(got.len(), all.len(), "listed twice");
        prop_assert_eq!(&got, &expected);
        prop_assert!(all.windows(2).all(|w| w[0].match_len >= w[1].match_len));
        // A capped query returns the longest matches.
        query.max_occurrences = cap;
        let mut some = Vec::new();
        m.occurrences(&query, &mut some);
        prop_assert_eq!(some.len(), cap.min(expected.len()));
        let kept: BTreeSet<_> = some.iter().map(key).collect();
        prop_assert!(kept.is_subset(&expected));
        let shortest_kept = some.iter().map(|o| o.match_len).min().unwrap_or(usize::MAX);
        let longest_left = expected.difference(&kept).map(|o| o.2).max().unwrap_or(0);
        prop_assert!(shortest_kept >= longest_left);
    }
}

#[test]
fn long_matches_have_no_cap() {
    let doc: Vec<Token> = (0..5000).map(|i| (i * 7919 % 1000) as Token).collect();
    let mut m = Matcher::new(Arc::new(ReferenceIndex::new([&doc])));
    m.extend(&doc[..3000]);
    assert_eq!(m.reference_match(), 3000);
    // The context repeats a 10-token cycle: its own match grows without bound.
    let mut loops = Matcher::new(Arc::new(ReferenceIndex::empty()));
    for i in 0..1000u32 {
        loops.push(u32::MAX - 10 + i % 10);
    }
    assert_eq!(loops.context_match(), 990);
    let occ = loops.first_occurrence(Source::Context, 990).unwrap();
    assert_eq!(occ.end, 989);
    assert_eq!(loops.continuation(&occ, 25, true), Some(u32::MAX - 10 + 5));
}
