//! Brute-force matching for the reference matcher: every earlier occurrence of every suffix
//! of the context, and what follows each.

use std::collections::BTreeSet;

use decoding_core::Token;

/// Where an occurrence is: `(in_context, end, match_len)`; `end` is the position of its last
/// token (an offset into the concatenated non-empty documents, or an index into the context)
/// and `match_len` how many tokens up to `end` agree with the end of the context.
pub type Occ = (bool, usize, usize);

/// Length of the longest common suffix of `a` and `b`.
pub fn common_suffix(a: &[Token], b: &[Token]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Every occurrence of a (non-empty) suffix of `context` in the documents and earlier in the
/// context (ending before its last token), each with its exact match length. No match spans
/// two documents.
pub fn occurrences(docs: &[Vec<Token>], context: &[Token]) -> BTreeSet<Occ> {
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

/// The longest match in the documents (`in_context = false`) or the context.
pub fn longest(occ: &BTreeSet<Occ>, in_context: bool) -> usize {
    occ.iter()
        .filter(|o| o.0 == in_context)
        .map(|o| o.2)
        .max()
        .unwrap_or(0)
}

/// The tokens after offset `end` of the concatenated non-empty documents, up to the end of
/// its document.
pub fn doc_continuation(docs: &[Vec<Token>], end: usize) -> &[Token] {
    let mut offset = 0;
    for doc in docs.iter().filter(|d| !d.is_empty()) {
        if end < offset + doc.len() {
            return &doc[end - offset + 1..];
        }
        offset += doc.len();
    }
    panic!("offset {end} is past the documents");
}

/// The token `depth` places after occurrence `occ` (depth 0 is right after it). A context
/// occurrence continues with the context; with `periodic` it continues past the context's
/// end by repeating the span after it (period `context.len() - 1 - end`).
pub fn continuation(
    docs: &[Vec<Token>],
    context: &[Token],
    occ: Occ,
    depth: usize,
    periodic: bool,
) -> Option<Token> {
    let (in_context, end, _) = occ;
    if !in_context {
        return doc_continuation(docs, end).get(depth).copied();
    }
    let period = context.len() - 1 - end;
    if periodic && period > 0 {
        Some(context[end + 1 + depth % period])
    } else {
        context.get(end + 1 + depth).copied()
    }
}
