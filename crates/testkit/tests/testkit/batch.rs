//! Broken batched models: each batch-only mistake is caught as its own class.

use decoding_core::{BatchLogitsModel, ModelError, NodeId, PerSequence, SeqId, TokenTree};
use decoding_testkit::broken::{BrokenModel, Bug};
use decoding_testkit::{CheckConfig, ViolationKind, check_batch_model};
use ndarray::{Array2, ArrayViewMut2, Axis};

/// A batching mistake.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mistake {
    /// The rows of the items are stacked in reverse item order.
    ReversedRows,
    /// Every logit shifts by 0.1 per other sequence in the pass.
    SeesOthers,
    /// A forward drops the uncommitted nodes of the sequences it does not include.
    ForgetsAbsent,
}

/// Correct per-sequence models, batched with one mistake.
struct Batched {
    inner: PerSequence<BrokenModel, fn() -> BrokenModel>,
    mistake: Mistake,
    live: Vec<SeqId>,
}

fn correct() -> BrokenModel {
    BrokenModel::new(16, Bug::None)
}

impl Batched {
    fn new(mistake: Mistake) -> Self {
        Self {
            inner: PerSequence::new(correct as fn() -> BrokenModel),
            mistake,
            live: Vec::new(),
        }
    }
}

impl BatchLogitsModel for Batched {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn add_sequence(&mut self) -> Result<SeqId, ModelError> {
        let seq = self.inner.add_sequence()?;
        self.live.push(seq);
        Ok(seq)
    }

    fn remove_sequence(&mut self, seq: SeqId) -> Result<(), ModelError> {
        self.live.retain(|&s| s != seq);
        self.inner.remove_sequence(seq)
    }

    fn forward_batch(
        &mut self,
        items: &[(SeqId, &TokenTree)],
        mut logits: ArrayViewMut2<'_, f32>,
    ) -> Result<(), ModelError> {
        let mut rows = Array2::zeros(logits.dim());
        self.inner.forward_batch(items, rows.view_mut())?;
        match self.mistake {
            Mistake::ReversedRows => {
                let mut offsets = Vec::new();
                let mut at = 0;
                for (_, tree) in items {
                    offsets.push(at);
                    at += tree.logits_rows();
                }
                let mut out = 0;
                for (i, (_, tree)) in items.iter().enumerate().rev() {
                    let n = tree.logits_rows();
                    let from = rows.slice_axis(Axis(0), (offsets[i]..offsets[i] + n).into());
                    logits
                        .slice_axis_mut(Axis(0), (out..out + n).into())
                        .assign(&from);
                    out += n;
                }
            }
            Mistake::SeesOthers => {
                logits.assign(&(rows + 0.1 * (items.len() - 1) as f32));
            }
            Mistake::ForgetsAbsent => {
                logits.assign(&rows);
                // Drop the pending trees of absent sequences by committing them empty (an
                // error just means they had none).
                let absent = self
                    .live
                    .iter()
                    .filter(|s| !items.iter().any(|(i, _)| i == *s));
                for &seq in absent {
                    let _ = self.inner.commit(seq, &[]);
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self, seq: SeqId, path: &[NodeId]) -> Result<(), ModelError> {
        self.inner.commit(seq, path)
    }
}

fn assert_caught(mistake: Mistake, kind: ViolationKind) {
    for seed in 0..4 {
        let config = CheckConfig::default().with_seed(seed);
        let error = check_batch_model(&mut Batched::new(mistake), &config)
            .expect_err(&format!("{mistake:?} passed"));
        assert_eq!(
            error.kind(),
            Some(kind),
            "{mistake:?}, seed {seed}:\n{error}"
        );
        assert!(error.to_string().contains("multi-sequence part"), "{error}");
    }
}

#[test]
fn rows_out_of_item_order_are_caught() {
    assert_caught(Mistake::ReversedRows, ViolationKind::BatchRowsOrder);
}

#[test]
fn sequences_that_see_each_other_are_caught() {
    assert_caught(Mistake::SeesOthers, ViolationKind::BatchInterference);
}

#[test]
fn absent_sequences_losing_their_nodes_are_caught() {
    assert_caught(Mistake::ForgetsAbsent, ViolationKind::AbsentSequence);
}
