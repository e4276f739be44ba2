//! The continuations the reference strategy drafts, against brute force.
//!
//! An arbitrary configuration (suffix trie, LLMA, prompt lookup; sources, lengths, budgets,
//! thresholds, periodic continuation, a cost curve) drafts step after step over an arbitrary
//! decoding: each step accepts an arbitrary root path of the drafted tree plus a bonus token
//! and feeds that back (`observe`), now and then jumping to an unrelated sequence. Every
//! drafted tree must be a valid tree within the step's node and depth budgets and the
//! vocabulary, a chain when asked, and:
//!
//! * every drafted path must be what follows some occurrence of a suffix of the context (at
//!   least `min_match` long, in a source the configuration searches), tagged with the sources
//!   of such occurrences (brute force over all positions);
//! * LLMA and prompt lookup: exactly the continuation of the first occurrence (smallest
//!   position) of the longest match, capped at `max_match` (and at the output length with
//!   `output_only`), references winning ties, cut at the depth budget and at the first token
//!   outside the vocabulary;
//! * the suffix trie with no probability threshold, no cost curve and room for everything:
//!   exactly the set of continuations of every occurrence to the adaptive depth
//!   (`ceil(depth_factor * match)`), with the union of their sources; with less room, the
//!   budget is filled with a subset.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use decoding_core::{
    CostCurve, DraftContext, NodeId, SourceSet, StepFeedback, Strategy, Token, TokenTree,
    Verification,
};
use libfuzzer_sys::fuzz_target;
use ndarray::Array2;
use parallel_decoding_fuzz::text::{self, Occ};
use parallel_decoding_fuzz::tree::check_invariants;
use reference::{
    CONTEXT_SOURCE, Mode, REFERENCE_SOURCE, ReferenceConfig, ReferenceIndex, ReferenceStrategy,
};

fn tag(occ: &Occ) -> SourceSet {
    SourceSet::of(if occ.0 {
        CONTEXT_SOURCE
    } else {
        REFERENCE_SOURCE
    })
}

fn arbitrary_config(u: &mut Unstructured<'_>) -> Result<ReferenceConfig> {
    let mode = *u.choose(&[Mode::Suffix, Mode::Suffix, Mode::Llma, Mode::PromptLookup])?;
    let mut c = ReferenceConfig::preset(mode);
    if u.ratio(1, 4)? {
        return Ok(c);
    }
    c.k = u.int_in_range(0..=12)?;
    c.min_match = u.int_in_range(0..=3)?;
    c.max_match = if u.arbitrary()? {
        usize::MAX
    } else {
        u.int_in_range(0..=5)?
    };
    c.references = u.ratio(3, 4)?;
    c.context = u.ratio(3, 4)?;
    c.output_only = u.ratio(1, 4)?;
    c.tree = u.ratio(3, 4)?;
    c.max_nodes = u.int_in_range(0..=40)?;
    c.min_prob = *u.choose(&[0.0, 0.0, 0.1, 0.3, 1.0])?;
    c.depth_factor = *u.choose(&[0.5, 1.0, 3.0, 100.0])?;
    c.max_occurrences = if u.arbitrary()? {
        usize::MAX
    } else {
        u.int_in_range(0..=16)?
    };
    c.length_weight = *u.choose(&[0.0, 1.0, 2.0])?;
    c.periodic = u.arbitrary()?;
    if u.ratio(1, 4)? {
        c.cost = Some(
            CostCurve::new(vec![(1, 1.0), (2, 1.49), (4, 2.19), (8, 3.47), (16, 6.41)]).unwrap(),
        );
    }
    Ok(c)
}

/// Every non-root node's path (root excluded) and its sources.
fn drafted_paths(tree: &TokenTree) -> BTreeMap<Vec<Token>, SourceSet> {
    (1..tree.len())
        .map(|n| (tree.path_tokens(n)[1..].to_vec(), tree.sources(n)))
        .collect()
}

/// The first `depth` tokens after `occ`, cut at the end of its text and at the first token
/// outside the vocabulary.
fn copied(
    docs: &[Vec<Token>],
    context: &[Token],
    occ: Occ,
    depth: usize,
    periodic: bool,
    vocab: usize,
) -> Vec<Token> {
    (0..depth)
        .map_while(|d| {
            text::continuation(docs, context, occ, d, periodic).filter(|&t| (t as usize) < vocab)
        })
        .collect()
}

fn check_draft(c: &ReferenceConfig, docs: &[Vec<Token>], ctx: &DraftContext<'_>, tree: &TokenTree) {
    let context = ctx.tokens;
    check_invariants(tree);
    assert_eq!(tree.root_token(), ctx.pending());
    assert!(
        tree.len() <= ctx.max_nodes.max(1),
        "{} nodes over the budget {}",
        tree.len(),
        ctx.max_nodes
    );
    assert!(tree.max_depth() <= ctx.max_depth.min(c.k), "too deep");
    assert!(
        tree.tokens()[1..]
            .iter()
            .all(|&t| (t as usize) < ctx.vocab_size),
        "token outside the vocabulary"
    );
    if ctx.chains_only || !c.tree {
        assert!(tree.is_chain(), "a chain was asked for");
    }
    let all = text::occurrences(docs, context);
    let usable: Vec<Occ> = all
        .iter()
        .copied()
        .filter(|o| o.2 >= c.min_match && if o.0 { c.context } else { c.references })
        .collect();
    let drafted = drafted_paths(tree);
    // Each drafted path continues some usable occurrence of each of its sources.
    for (path, &sources) in &drafted {
        assert!(!sources.is_empty(), "untagged draft {path:?}");
        for (in_context, id) in [(false, REFERENCE_SOURCE), (true, CONTEXT_SOURCE)] {
            if sources.contains(id) {
                assert!(
                    usable.iter().any(|&o| o.0 == in_context
                        && copied(docs, context, o, path.len(), c.periodic, ctx.vocab_size)
                            == *path),
                    "draft {path:?} tagged {id:?} follows no occurrence in {context:?} / {docs:?}"
                );
            }
        }
    }
    let depth = c.k.min(ctx.max_depth);
    match c.mode {
        Mode::Suffix => {
            let from_refs = if c.references {
                text::longest(&all, false)
            } else {
                0
            };
            let matched = from_refs.max(if c.context {
                text::longest(&all, true)
            } else {
                0
            });
            if matched < c.min_match || depth == 0 || ctx.max_nodes.min(c.max_nodes) < 2 {
                assert_eq!(tree.len(), 1, "nothing to draft");
                return;
            }
            let unbounded = c.min_prob == 0.0
                && c.cost.is_none()
                && c.tree
                && !ctx.chains_only
                && c.max_occurrences >= usable.len();
            if !unbounded {
                return;
            }
            let adaptive = (c.depth_factor * matched as f32).ceil() as usize;
            let depth = depth.min(adaptive.max(1));
            let mut expected: BTreeMap<Vec<Token>, SourceSet> = BTreeMap::new();
            for &o in &usable {
                let chain = copied(docs, context, o, depth, c.periodic, ctx.vocab_size);
                for len in 1..=chain.len() {
                    let e = expected
                        .entry(chain[..len].to_vec())
                        .or_insert(SourceSet::EMPTY);
                    *e = e.union(tag(&o));
                }
            }
            let budget = ctx.max_nodes.min(c.max_nodes);
            if expected.len() < budget {
                assert_eq!(
                    drafted, expected,
                    "the whole trie for {context:?} / {docs:?}"
                );
            } else {
                assert_eq!(tree.len(), budget, "the budget is filled");
                let keys: BTreeSet<_> = expected.keys().collect();
                assert!(drafted.keys().all(|k| keys.contains(k)));
            }
        }
        _ => {
            let depth = depth.min(ctx.max_nodes.saturating_sub(1));
            let mut cap = c.max_match;
            if c.output_only {
                cap = cap.min(context.len() - ctx.prompt_len);
            }
            let best = |in_context: bool, enabled: bool| {
                if enabled {
                    text::longest(&all, in_context).min(cap)
                } else {
                    0
                }
            };
            let (from_refs, from_context) = (best(false, c.references), best(true, c.context));
            let (in_context, len) = if from_refs >= from_context {
                (false, from_refs)
            } else {
                (true, from_context)
            };
            if depth == 0 || len < c.min_match || len == 0 {
                assert_eq!(tree.len(), 1, "nothing to draft");
                return;
            }
            let first = all
                .iter()
                .filter(|o| o.0 == in_context && o.2 >= len)
                .map(|o| o.1)
                .min()
                .expect("the longest match occurs");
            let chain = copied(
                docs,
                context,
                (in_context, first, len),
                depth,
                c.periodic,
                ctx.vocab_size,
            );
            let got: Vec<Token> = tree.tokens()[1..].to_vec();
            assert!(tree.is_chain());
            assert_eq!(
                got, chain,
                "the first occurrence's continuation ({:?}, len {len})",
                c.mode
            );
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let alphabet: Token = u.int_in_range(1..=5)?;
    let docs: Vec<Vec<Token>> = (0..u.int_in_range(0..=3)?)
        .map(|_| {
            (0..u.int_in_range(0..=24)?)
                .map(|_| u.int_in_range(0..=alphabet - 1))
                .collect::<Result<Vec<Token>>>()
        })
        .collect::<Result<_>>()?;
    let config = arbitrary_config(u)?;
    let index = Arc::new(ReferenceIndex::new(&docs));
    let Ok(mut strategy) = ReferenceStrategy::new(config.clone(), index) else {
        assert!(config.validate().is_err());
        return Ok(());
    };
    let config = strategy.config().clone();
    let vocab_size = u.int_in_range(alphabet.saturating_sub(1).max(1)..=alphabet + 1)? as usize;
    let mut tokens: Vec<Token> = (0..u.int_in_range(1..=24)?)
        .map(|_| u.int_in_range(0..=alphabet - 1))
        .collect::<Result<_>>()?;
    let mut prompt_len = tokens.len();
    strategy.begin(&tokens, vocab_size).unwrap();
    let mut tree = TokenTree::new(0);
    for _ in 0..24 {
        if u.is_empty() || tokens.len() > 90 {
            break;
        }
        let max_nodes = u.int_in_range(1..=40)?;
        let max_depth = u.int_in_range(0..=12)?;
        let ctx = DraftContext::new(&tokens, prompt_len, max_nodes, max_depth, vocab_size)
            .with_chains_only(u.ratio(1, 6)?);
        tree.reset(ctx.pending());
        strategy.draft(&ctx, &mut tree).unwrap();
        check_draft(&config, &docs, &ctx, &tree);

        // Accept an arbitrary root path of the tree and a bonus token.
        let mut path = vec![0];
        loop {
            let node = *path.last().unwrap();
            let children: Vec<NodeId> = tree.children(node).collect();
            if children.is_empty() || !u.ratio(3, 4)? {
                break;
            }
            path.push(*u.choose(&children)?);
        }
        let bonus = u.int_in_range(0..=alphabet - 1)?;
        let verification = Verification {
            path: path.clone(),
            bonus,
        };
        let mut emitted: Vec<Token> = path[1..].iter().map(|&n| tree.token(n)).collect();
        emitted.push(bonus);
        let before = tokens.len();
        tokens.extend(&emitted);
        let logits = Array2::<f32>::zeros((tree.logits_rows(), vocab_size));
        strategy
            .observe(&StepFeedback {
                tree: &tree,
                logits: logits.view(),
                verification: &verification,
                emitted: &tokens[before..],
                tokens: &tokens,
                hidden_state: None,
                head_logits: None,
            })
            .unwrap();
        if u.ratio(1, 16)? {
            // The strategy starts another sequence: nothing of the old one may leak.
            tokens = (0..u.int_in_range(1..=24)?)
                .map(|_| u.int_in_range(0..=alphabet - 1))
                .collect::<Result<_>>()?;
            prompt_len = tokens.len();
            strategy.begin(&tokens, vocab_size).unwrap();
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let data = parallel_decoding_fuzz::input(data);
    let _ = run(&mut Unstructured::new(&data));
});
