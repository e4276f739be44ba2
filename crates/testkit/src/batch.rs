//! The batch check: the single-sequence contract on one sequence at a time, then several
//! sequences sharing forward passes, each of which must get exactly its rows alone.

use std::collections::{BTreeMap, HashSet};

use decoding_core::{BatchLogitsModel, DecodeError, NodeId, SeqId, Token, TokenTree};
use ndarray::{Array1, Array2, Axis};
use rand::RngExt;
use rand::seq::SliceRandom;

use crate::compare::RowDiff;
use crate::config::CheckConfig;
use crate::oracle::{Comparison, Expected, Observation, compare, expected_for};
use crate::plan::{Action, Op, Planner};
use crate::report::CheckReport;
use crate::run::{Runner, Settings, run_single};
use crate::subject::{OneSequence, guarded, succeeded};
use crate::violation::{CheckError, Violation, ViolationKind, describe_tree};

/// Checks a [`BatchLogitsModel`] against its contract; see the [crate docs](crate).
///
/// First the single-sequence contract, as [`check_model`](crate::check_model) does, on one
/// sequence at a time (each episode a fresh sequence, alone in its batches; the batch
/// interface has no `committed_len` or `truncate`, so those are not checked). Then
/// [`episodes`](CheckConfig::with_episodes) of [`rounds`](CheckConfig::with_rounds) batched
/// passes over up to [`sequences`](CheckConfig::with_sequences) sequences that join and
/// leave, are absent from some passes (and commit their previous tree afterwards, as the
/// contract allows), and appear in random item order; every row must be the one the
/// sequence gets alone, from scratch.
///
/// Sequences the check adds are removed before it returns, unless it stops on a violation.
pub fn check_batch_model<B: BatchLogitsModel + ?Sized>(
    model: &mut B,
    config: &CheckConfig,
) -> Result<CheckReport, CheckError> {
    let mut report = {
        let mut one = OneSequence::new(&mut *model);
        let report = run_single(&mut one, config)?;
        one.finish().map_err(|e| {
            CheckError::from(Violation::new(
                ViolationKind::UnexpectedError,
                format!("remove_sequence of a live sequence failed: {e}"),
            ))
        })?;
        report
    };
    let settings = Settings::of(
        config,
        model.vocab_size(),
        model.max_context(),
        model.tree_support(),
        false,
    )?;
    let mut multi = Multi {
        report: CheckReport::new(config.seed(), model.tree_support(), settings.max_context),
        model,
        settings: &settings,
        episode: 0,
    };
    for episode in 0..config.episodes() {
        let events = schedule(&settings, episode);
        multi.episode = episode;
        multi.run(&events).map_err(|v| {
            let step = v.step.min(events.len() - 1);
            let history = events[..=step].iter().map(Event::describe).collect();
            CheckError::from(
                v.note("(in the multi-sequence part of the batch check)")
                    .located(config.seed(), episode, step, history),
            )
        })?;
        multi.report.episodes += 1;
    }
    report.merge(multi.report);
    Ok(report)
}

/// One call of the multi-sequence schedule. Sequences are named by slot (the order in
/// which they were added).
#[derive(Clone, Debug)]
enum Event {
    Add(usize),
    Remove(usize),
    /// One forward pass over these slots' trees, rows stacked in this order.
    Batch(Vec<(usize, TokenTree)>),
    /// A commit of the slot's last tree; `deferred` when the slot was absent from the pass
    /// since that tree.
    Commit {
        slot: usize,
        path: Vec<NodeId>,
        deferred: bool,
    },
}

impl Event {
    fn describe(&self) -> String {
        match self {
            Event::Add(slot) => format!("add_sequence() as s{slot}"),
            Event::Remove(slot) => format!("remove_sequence(s{slot})"),
            Event::Batch(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(slot, tree)| format!("s{slot}: {}", describe_tree(tree)))
                    .collect();
                format!("forward_batch [{}]", items.join("; "))
            }
            Event::Commit {
                slot,
                path,
                deferred,
            } => format!(
                "commit(s{slot}, {path:?}){}",
                if *deferred {
                    " after being absent from the last pass"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The calls of one multi-sequence episode, drawn from the seed.
fn schedule(settings: &Settings, episode: usize) -> Vec<Event> {
    let mut planner = Planner::new(settings, 0xBA7C_0000 + episode as u64);
    let most = settings.config.sequences();
    let mut events = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    let mut lens: BTreeMap<usize, usize> = BTreeMap::new();
    let mut next = 0;
    let mut owed: Vec<(usize, Vec<NodeId>)> = Vec::new();
    for _pass in 0..settings.config.rounds() {
        let is_owed = |s: &usize, owed: &[(usize, Vec<NodeId>)]| owed.iter().any(|(o, _)| o == s);
        // Full sequences leave (the owed ones have no tree pending that could fill them).
        let mut leaving: Vec<usize> = live
            .iter()
            .copied()
            .filter(|s| !is_owed(s, &owed))
            .filter(|s| lens[s] + 2 > settings.max_context)
            .collect();
        if live.len() >= 2 && planner.rng().random_bool(0.15) {
            let s = live[planner.rng().random_range(0..live.len())];
            if !is_owed(&s, &owed) && !leaving.contains(&s) {
                leaving.push(s);
            }
        }
        for s in leaving {
            live.retain(|&l| l != s);
            events.push(Event::Remove(s));
        }
        while live.len() < most && (live.is_empty() || planner.rng().random_bool(0.5)) {
            live.push(next);
            lens.insert(next, 0);
            events.push(Event::Add(next));
            next += 1;
        }
        let mut order = live.clone();
        order.shuffle(planner.rng());
        let eligible: Vec<usize> = order.into_iter().filter(|s| !is_owed(s, &owed)).collect();
        let mut chosen: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|_| planner.rng().random_bool(0.8))
            .collect();
        if chosen.is_empty() && !eligible.is_empty() {
            chosen.push(eligible[0]);
        }
        let items: Vec<(usize, TokenTree)> = chosen
            .iter()
            .map(|&s| (s, planner.round_tree(lens[&s])))
            .collect();
        let trees: Vec<(usize, TokenTree)> = items.clone();
        if !items.is_empty() {
            events.push(Event::Batch(items));
        }
        for (slot, path) in owed.drain(..) {
            *lens.get_mut(&slot).expect("live") += path.len();
            events.push(Event::Commit {
                slot,
                path,
                deferred: true,
            });
        }
        for (slot, tree) in trees {
            let path = planner.path(&tree);
            match planner.rng().random_range(0..100) {
                0..60 => {
                    *lens.get_mut(&slot).expect("live") += path.len();
                    events.push(Event::Commit {
                        slot,
                        path,
                        deferred: false,
                    });
                }
                60..70 => events.push(Event::Commit {
                    slot,
                    path: Vec::new(),
                    deferred: false,
                }),
                70..88 if live.len() >= 2 => owed.push((slot, path)),
                _ => {}
            }
        }
    }
    for (slot, path) in owed {
        events.push(Event::Commit {
            slot,
            path,
            deferred: false,
        });
    }
    events.extend(live.into_iter().map(Event::Remove));
    events
}

/// The live sequences of a run or replay.
#[derive(Default)]
struct Live {
    seqs: BTreeMap<usize, SeqId>,
    committed: BTreeMap<usize, Vec<Token>>,
    last_tree: BTreeMap<usize, TokenTree>,
}

/// A row of a batched pass.
struct BatchObs {
    obs: Observation,
    slot: usize,
    item: usize,
    row: usize,
}

struct Multi<'a, B: ?Sized> {
    model: &'a mut B,
    settings: &'a Settings,
    report: CheckReport,
    episode: usize,
}

fn failed(kind: ViolationKind, what: &str, e: impl std::fmt::Display) -> Violation {
    Violation::new(kind, format!("{what}: {e}"))
}

impl<B: BatchLogitsModel + ?Sized> Multi<'_, B> {
    fn run(&mut self, events: &[Event]) -> Result<(), Violation> {
        let mut live = Live::default();
        let mut observations = Vec::new();
        let result = (|| {
            for (i, event) in events.iter().enumerate() {
                if let Err(mut v) = self.execute(event, i, &mut live, Some(&mut observations)) {
                    v.step = i;
                    return Err(v);
                }
                self.report.steps += 1;
            }
            Ok(())
        })();
        if let Err(v) = result {
            self.verify(events, &observations)?;
            return Err(v);
        }
        self.verify(events, &observations)
    }

    fn execute(
        &mut self,
        event: &Event,
        step: usize,
        live: &mut Live,
        record: Option<&mut Vec<BatchObs>>,
    ) -> Result<(), Violation> {
        match event {
            Event::Add(slot) => {
                let seq = succeeded("add_sequence()", guarded(|| self.model.add_sequence()))?;
                if record.is_some() && live.seqs.values().any(|&s| s == seq) {
                    return Err(Violation::new(
                        ViolationKind::DuplicateSequence,
                        format!("add_sequence() returned {seq:?}, the id of a live sequence"),
                    ));
                }
                live.seqs.insert(*slot, seq);
                live.committed.insert(*slot, Vec::new());
            }
            Event::Remove(slot) => {
                let seq = live.seqs.remove(slot).expect("live");
                succeeded(
                    &format!("remove_sequence({seq:?})"),
                    guarded(|| self.model.remove_sequence(seq)),
                )?;
            }
            Event::Commit {
                slot,
                path,
                deferred,
            } => {
                let seq = live.seqs[slot];
                let result = guarded(|| self.model.commit(seq, path));
                let what = format!("commit({seq:?}, {path:?}) of s{slot}'s last tree");
                if let (true, Ok(Err(e))) = (*deferred, &result) {
                    return Err(Violation::new(
                        ViolationKind::AbsentSequence,
                        format!(
                            "{what} failed after the sequence was absent from the last pass: {e}"
                        ),
                    ));
                }
                succeeded(&what, result)?;
                let tree = &live.last_tree[slot];
                let tokens: Vec<Token> = path.iter().map(|&n| tree.token(n)).collect();
                live.committed.get_mut(slot).expect("live").extend(tokens);
            }
            Event::Batch(items) => self.batch(items, step, live, record)?,
        }
        Ok(())
    }

    /// One batched forward; with `record`, the rows-written check and the rows kept.
    fn batch(
        &mut self,
        items: &[(usize, TokenTree)],
        step: usize,
        live: &mut Live,
        record: Option<&mut Vec<BatchObs>>,
    ) -> Result<(), Violation> {
        let vocab = self.settings.vocab;
        let total: usize = items.iter().map(|(_, t)| t.logits_rows()).sum();
        let mut logits = Array2::from_elem((total, vocab), f32::NAN);
        let batch: Vec<(SeqId, &TokenTree)> =
            items.iter().map(|(s, t)| (live.seqs[s], t)).collect();
        let result = guarded(|| self.model.forward_batch(&batch, logits.view_mut()));
        self.report.forwards += 1;
        self.report.nodes += items.iter().map(|(_, t)| t.len()).sum::<usize>();
        if items.len() > 1 && record.is_some() {
            self.report.multi_sequence_passes += 1;
        }
        succeeded(
            &format!("forward_batch of {} sequences", items.len()),
            result,
        )?;
        for (slot, tree) in items {
            live.last_tree.insert(*slot, tree.clone());
        }
        let Some(out) = record else {
            return Ok(());
        };
        let mut offset = 0;
        for (item, (slot, tree)) in items.iter().enumerate() {
            let seq = live.seqs[slot];
            let committed = &live.committed[slot];
            for node in tree.logits_nodes() {
                let row = offset + tree.logits_row(node).expect("asked for");
                let values = logits.index_axis(Axis(0), row);
                if values.iter().any(|x| x.is_nan()) {
                    return Err(Violation::new(
                        ViolationKind::RowsNotWritten,
                        format!(
                            "row {row} of the stacked buffer (item {item}, sequence s{slot}, node \
                             {node}) holds the NaN the check filled it with"
                        ),
                    )
                    .at(tree, node, committed.len()));
                }
                let hidden = self.extra(seq, node, true)?;
                let heads = self.extra(seq, node, false)?;
                out.push(BatchObs {
                    obs: Observation::new(step, tree, node, committed, values.to_vec())
                        .with_extras(hidden, heads),
                    slot: *slot,
                    item,
                    row,
                });
            }
            offset += tree.logits_rows();
        }
        Ok(())
    }

    /// A hidden state (`hidden`) or head logits of `seq`'s node, when exposed and checked.
    fn extra(
        &mut self,
        seq: SeqId,
        node: NodeId,
        hidden: bool,
    ) -> Result<Option<Vec<f32>>, Violation> {
        let config = &self.settings.config;
        let wanted = if hidden {
            config.checks_hidden_states()
        } else {
            config.checks_head_logits()
        };
        if !wanted {
            return Ok(None);
        }
        let result = guarded(|| {
            if hidden {
                let mut out = Array1::zeros(0);
                self.model
                    .hidden_state(seq, node, &mut out)
                    .map(|()| out.to_vec())
            } else {
                let mut out = Array2::zeros((0, 0));
                self.model
                    .head_logits(seq, node, &mut out)
                    .map(|()| out.iter().copied().collect())
            }
        });
        let (kind, what) = if hidden {
            (ViolationKind::HiddenStates, "hidden_state")
        } else {
            (ViolationKind::HeadLogits, "head_logits")
        };
        match result {
            Err(panic) => Err(failed(
                ViolationKind::Panicked,
                &format!("{what} panicked"),
                panic,
            )),
            Ok(Err(DecodeError::MissingCapability(_))) => Ok(None),
            Ok(Err(e)) => Err(failed(
                kind,
                &format!("{what}({seq:?}, {node}) failed for a node that asked for logits"),
                e,
            )),
            Ok(Ok(values)) => Ok(Some(values)),
        }
    }

    /// Runs `f` on one fresh sequence, alone in its batches, then removes it.
    fn alone<T>(
        &mut self,
        f: impl FnOnce(&mut Runner<'_>) -> Result<T, Violation>,
    ) -> Result<T, Violation> {
        let mut one = OneSequence::new(&mut *self.model);
        let (result, report) = {
            let mut runner = Runner::new(&mut one, self.settings);
            runner.episode = self.episode;
            let result = f(&mut runner);
            (result, runner.report)
        };
        self.report.forwards += report.forwards;
        self.report.nodes += report.nodes;
        let finished = one.finish();
        let value = result?;
        succeeded("remove_sequence", Ok(finished))?;
        Ok(value)
    }

    fn verify(&mut self, events: &[Event], observations: &[BatchObs]) -> Result<(), Violation> {
        let expected = self.alone(|runner| {
            expected_for(
                observations.iter().map(|o| &o.obs.context[..]),
                &mut |tokens: &[Token], positions: &[usize]| runner.recompute(tokens, positions),
            )
        })?;
        let tolerance = self.settings.tolerance;
        for (i, o) in observations.iter().enumerate() {
            let e = &expected[&o.obs.context];
            let mut v = match compare(&tolerance, &mut self.report, self.episode, &o.obs, e) {
                Comparison::Agrees => continue,
                Comparison::Logits => self.diagnose(events, observations, i, &expected),
                Comparison::Extra(kind, detail) => Violation::new(
                    kind,
                    format!("sequence s{} in a batched pass: {detail}", o.slot),
                )
                .at(tree_of(events, o), o.obs.node, o.obs.committed),
            };
            v.step = o.obs.op;
            return Err(v);
        }
        Ok(())
    }

    fn diagnose(
        &mut self,
        events: &[Event],
        observations: &[BatchObs],
        index: usize,
        expected: &std::collections::HashMap<Vec<Token>, Expected>,
    ) -> Violation {
        match self.classify(events, observations, index, expected) {
            Ok(v) | Err(v) => v,
        }
    }

    fn classify(
        &mut self,
        events: &[Event],
        observations: &[BatchObs],
        index: usize,
        expected: &std::collections::HashMap<Vec<Token>, Expected>,
    ) -> Result<Violation, Violation> {
        let o = &observations[index];
        let tree = tree_of(events, o);
        let tolerance = self.settings.tolerance;
        let close = |e: &[f32], a: &[f32]| tolerance.close(e, a, true);
        let context = o.obs.context.clone();
        let pure = self.alone(|r| r.pure(&context))?.logits;
        let grouped = &expected[&o.obs.context];
        let base = |kind: ViolationKind, detail: String| {
            Violation::new(kind, detail)
                .at(tree, o.obs.node, o.obs.committed)
                .with_diff(RowDiff::of(&pure, &o.obs.logits))
        };
        if !close(&pure, &grouped.logits) {
            return Ok(base(
                ViolationKind::TreeComposition,
                format!(
                    "the recompute disagrees with itself: the chain of this node's {} context \
                     tokens gives different logits at its last position alone than inside a \
                     longer chain ({})",
                    context.len(),
                    RowDiff::of(&pure, &grouped.logits)
                ),
            ));
        }
        let (slot, node) = (o.slot, o.obs.node);
        let b = o.obs.op;

        // Another item's (or node's) row in this one's place.
        for other in observations.iter().filter(|x| x.obs.op == b) {
            if other.item == o.item && other.obs.node == node {
                continue;
            }
            let theirs = &expected[&other.obs.context].logits;
            if close(theirs, &o.obs.logits) && !close(&pure, theirs) {
                let kind = if other.item == o.item {
                    ViolationKind::RowsMisplaced
                } else {
                    ViolationKind::BatchRowsOrder
                };
                return Ok(base(
                    kind,
                    format!(
                        "row {} of the stacked buffer, the row of item {} (s{slot}, node {node}), \
                         holds the logits of item {} (s{}, node {}), whose row is {}",
                        o.row, o.item, other.item, other.slot, other.obs.node, other.row
                    ),
                ));
            }
        }

        // The same calls again.
        let again = self.replay_row(&events[..b], &events[b], slot, node)?;
        if !close(&o.obs.logits, &again) {
            return Ok(base(
                ViolationKind::Nondeterministic,
                format!(
                    "the same calls on fresh sequences gave s{slot}'s node {node} different \
                     logits the second time ({})",
                    RowDiff::of(&o.obs.logits, &again)
                ),
            ));
        }

        // The sequence alone: if wrong, the single-sequence diagnosis says why.
        let (ops, k) = solo_ops(&events[..=b], slot);
        let solo = Observation {
            op: k,
            ..o.obs.clone()
        };
        let grouped = Expected {
            logits: pure.clone(),
            hidden: None,
            heads: None,
            source: None,
        };
        let alone_row = self.alone(|r| {
            r.replay(&[], &ops[..k])?;
            let tree = ops[k].tree().expect("a forward");
            r.eval(tree, node)
        })?;
        if !close(&pure, &alone_row) {
            let mut v = self.alone(|r| Ok(r.diagnose(&ops, &solo, &grouped)))?;
            v = v.note(format!(
                "(sequence s{slot} alone, replayed without the other sequences, shows it too: \
                 its calls as one sequence were {})",
                ops.iter().map(Op::describe).collect::<Vec<_>>().join("; ")
            ));
            return Ok(v);
        }

        // Alone it is right: absences, the same pass, or earlier passes of the others?
        let had_absence = events[..b]
            .iter()
            .any(|e| matches!(e, Event::Commit { slot: s, deferred: true, .. } if *s == slot));
        if had_absence {
            let undeferred = without_deferral(&events[..b]);
            let row = self.replay_row(&undeferred, &events[b], slot, node)?;
            if close(&pure, &row) {
                return Ok(base(
                    ViolationKind::AbsentSequence,
                    format!(
                        "s{slot} gets the expected logits when each of its commits follows its \
                         own forward directly, and wrong ones when it commits a tree after a \
                         pass it was absent from"
                    ),
                ));
            }
        }
        let Event::Batch(items) = &events[b] else {
            unreachable!("observations come from batches")
        };
        let only = Event::Batch(items.iter().filter(|(s, _)| *s == slot).cloned().collect());
        let row = self.replay_row(&events[..b], &only, slot, node)?;
        let others: Vec<String> = items
            .iter()
            .filter(|(s, _)| *s != slot)
            .map(|(s, _)| format!("s{s}"))
            .collect();
        let detail = if close(&pure, &row) {
            format!(
                "s{slot}'s node {node} gets the expected logits when it is alone in the pass and \
                 wrong ones beside {}: the sequences of a pass see each other",
                others.join(", ")
            )
        } else {
            format!(
                "s{slot}'s node {node} gets the expected logits when the sequence is replayed \
                 alone, and wrong ones after the other sequences' calls even when it is alone in \
                 the pass: their forwards or commits changed this sequence's cache"
            )
        };
        Ok(base(ViolationKind::BatchInterference, detail))
    }

    /// Replays `events` on fresh sequences, then the pass `batch`; returns `slot`'s row
    /// for `node`, and removes the sequences.
    fn replay_row(
        &mut self,
        events: &[Event],
        batch: &Event,
        slot: usize,
        node: NodeId,
    ) -> Result<Vec<f32>, Violation> {
        let mut live = Live::default();
        let result = (|| {
            for (i, event) in events.iter().enumerate() {
                self.execute(event, i, &mut live, None)?;
            }
            let Event::Batch(items) = batch else {
                unreachable!("a pass")
            };
            let mut observations = Vec::new();
            self.batch(items, events.len(), &mut live, Some(&mut observations))?;
            observations
                .into_iter()
                .find(|o| o.slot == slot && o.obs.node == node)
                .map(|o| o.obs.logits)
                .ok_or_else(|| Violation::new(ViolationKind::RowsNotWritten, "row missing"))
        })();
        for (_, seq) in std::mem::take(&mut live.seqs) {
            let _ = guarded(|| self.model.remove_sequence(seq));
        }
        result
    }
}

/// The tree of an observation's pass.
fn tree_of<'e>(events: &'e [Event], o: &BatchObs) -> &'e TokenTree {
    match &events[o.obs.op] {
        Event::Batch(items) => &items[o.item].1,
        _ => unreachable!("observations come from batches"),
    }
}

/// `slot`'s calls in `events` (ending with a pass it is in) as one sequence's episode, and
/// the index of the last forward.
fn solo_ops(events: &[Event], slot: usize) -> (Vec<Op>, usize) {
    let mut ops = Vec::new();
    for event in events {
        match event {
            Event::Add(s) if *s == slot => ops.push(Op::Reset),
            Event::Batch(items) => {
                if let Some((_, tree)) = items.iter().find(|(s, _)| *s == slot) {
                    ops.push(Op::Round {
                        tree: tree.clone(),
                        action: Action::Leave,
                    });
                }
            }
            Event::Commit { slot: s, path, .. } if *s == slot => {
                if let Some(Op::Round { action, .. }) = ops.last_mut() {
                    *action = if path.is_empty() {
                        Action::Drop
                    } else {
                        Action::Commit(path.clone())
                    };
                }
            }
            _ => {}
        }
    }
    let k = ops.len() - 1;
    (ops, k)
}

/// `events` with every deferred commit moved right after the pass of its tree.
fn without_deferral(events: &[Event]) -> Vec<Event> {
    let mut owner: Vec<Option<usize>> = vec![None; events.len()];
    for (j, event) in events.iter().enumerate() {
        if let Event::Commit {
            slot,
            deferred: true,
            ..
        } = event
        {
            owner[j] = events[..j].iter().rposition(
                |e| matches!(e, Event::Batch(items) if items.iter().any(|(s, _)| s == slot)),
            );
        }
    }
    let mut out = Vec::new();
    let moved: HashSet<usize> = (0..events.len()).filter(|&j| owner[j].is_some()).collect();
    for (i, event) in events.iter().enumerate() {
        if moved.contains(&i) {
            continue;
        }
        out.push(event.clone());
        for j in (0..events.len()).filter(|&j| owner[j] == Some(i)) {
            if let Event::Commit { slot, path, .. } = &events[j] {
                out.push(Event::Commit {
                    slot: *slot,
                    path: path.clone(),
                    deferred: false,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_commits_move_after_their_pass() {
        let tree = TokenTree::new(1);
        let events = vec![
            Event::Add(0),
            Event::Add(1),
            Event::Batch(vec![(0, tree.clone()), (1, tree.clone())]),
            Event::Batch(vec![(1, tree.clone())]),
            Event::Commit {
                slot: 0,
                path: vec![0],
                deferred: true,
            },
        ];
        let moved = without_deferral(&events);
        assert!(matches!(moved[3], Event::Commit { slot: 0, .. }));
        assert!(matches!(moved[4], Event::Batch(_)));
        let (ops, k) = solo_ops(&events, 0);
        assert_eq!(k, 1);
        assert!(matches!(&ops[1], Op::Round { action: Action::Commit(p), .. } if p == &[0]));
    }
}
