//! Pool invariants against a naive reference model of the LRU rules.

use decoding_core::Token;
use lookahead::NgramPool;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Insert(Token, Vec<Token>),
    InsertAll(Vec<Token>),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..4, prop::collection::vec(0u32..3, n - 1..=n - 1))
            .prop_map(|(k, c)| Op::Insert(k, c)),
        1 => prop::collection::vec(0u32..4, 0..12).prop_map(Op::InsertAll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pool_matches_a_naive_lru(
        (n, ops) in (2usize..5).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 0..60))),
        per_key in 0usize..5, max_keys in prop::option::of(1usize..4),
    ) {
        let mut pool = NgramPool::new(n, per_key).unwrap();
        if let Some(m) = max_keys {
            pool = pool.with_max_keys(m).unwrap();
        }
        // The reference: per key, a Vec of continuations, least recent first; keys by last update.
        let mut naive: HashMap<Token, Vec<Vec<Token>>> = HashMap::new();
        let mut key_order: Vec<Token> = Vec::new();
        let mut insert = |naive: &mut HashMap<Token, Vec<Vec<Token>>>, k: Token, c: &[Token]| {
            if per_key == 0 {
                return;
            }
            let list = naive.entry(k).or_default();
            list.retain(|x| x != c);
            list.push(c.to_vec());
            if list.len() > per_key {
                list.remove(0);
            }
            key_order.retain(|&x| x != k);
            key_order.push(k);
            if let Some(m) = max_keys && key_order.len() > m {
                let evicted = key_order.remove(0);
                naive.remove(&evicted);
            }
        };
        for op in &ops {
            match op {
                Op::Insert(k, c) => {
                    pool.insert(*k, c);
                    insert(&mut naive, *k, c);
                }
                Op::InsertAll(tokens) => {
                    pool.insert_all(tokens);
                    for g in tokens.windows(n) {
                        insert(&mut naive, g[0], &g[1..]);
                    }
                }
            }
            prop_assert!(pool.check_invariants().is_ok(), "{:?}", pool.check_invariants());
        }
        for k in 0..4 {
            let got: Vec<Vec<Token>> = pool.get(k).map(<[Token]>::to_vec).collect();
            let mut want = naive.get(&k).cloned().unwrap_or_default();
            want.reverse();
            prop_assert_eq!(got, want);
        }
        prop_assert_eq!(pool.len(), naive.values().map(Vec::len).sum::<usize>());
        prop_assert!(pool.keys() <= max_keys.unwrap_or(usize::MAX));
    }
}

#[test]
fn wrong_lengths_are_ignored() {
    let mut pool = NgramPool::new(3, 2).unwrap();
    assert!(!pool.insert(1, &[1]));
    assert!(!pool.insert(1, &[1, 2, 3]));
    assert!(pool.is_empty());
    assert!(pool.insert(1, &[1, 2]));
    assert_eq!(pool.len(), 1);
}
