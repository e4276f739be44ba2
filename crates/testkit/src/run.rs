//! Running episodes against one sequence: executing the planned calls with the checks that
//! need no oracle, then comparing every observed row with the recompute.

use decoding_core::{LogitsModel, ModelError, NodeId, Token, TokenTree, TreeSupport};
use ndarray::Array2;

use crate::compare::Tolerance;
use crate::config::CheckConfig;
use crate::oracle::{Comparison, Expected, Observation, chain, compare, expected_for};
use crate::plan::{Action, Misuse, Op, Planner};
use crate::report::CheckReport;
use crate::subject::{Single, Subject, guarded, succeeded};
use crate::violation::{CheckError, Violation, ViolationKind, describe_tree};

/// Checks a [`LogitsModel`] against its contract; see the [crate docs](crate).
///
/// Runs [`episodes`](CheckConfig::with_episodes) of random calls (prefills, forwards of
/// random trees and chains, commits of random paths, empty commits, forwards left
/// uncommitted, truncations, resets and misuse that must fail), then compares every row
/// the model returned with the recompute: the same model, after `reset`, evaluating the
/// node's committed context plus its path as one chain. Returns what was measured, or the
/// first violation, classified and located.
///
/// The model is left in an arbitrary state; `reset` it before other use.
pub fn check_model<M: LogitsModel + ?Sized>(
    model: &mut M,
    config: &CheckConfig,
) -> Result<CheckReport, CheckError> {
    run_single(&mut Single(model), config)
}

/// Runs the single-sequence check on any subject.
pub(crate) fn run_single(
    subject: &mut dyn Subject,
    config: &CheckConfig,
) -> Result<CheckReport, CheckError> {
    let settings = Settings::new(config, &*subject)?;
    let mut runner = Runner::new(subject, &settings);
    for episode in 0..config.episodes() {
        let ops = Planner::new(&settings, episode as u64).episode(config.rounds());
        runner.episode = episode;
        runner
            .run_episode(&ops)
            .map_err(|v| locate(v, config.seed(), episode, &ops))?;
        runner.report.episodes += 1;
    }
    Ok(runner.report)
}

/// Fills in the seed, episode and history of a violation at its step.
pub(crate) fn locate(v: Violation, seed: u64, episode: usize, ops: &[Op]) -> CheckError {
    let step = v.step.min(ops.len().saturating_sub(1));
    let history = ops[..=step].iter().map(Op::describe).collect();
    v.located(seed, episode, step, history).into()
}

/// The validated configuration and what the check learned of the model.
pub(crate) struct Settings {
    pub(crate) config: CheckConfig,
    pub(crate) vocab: usize,
    /// The longest context built: the configured one, lowered to the model's.
    pub(crate) max_context: usize,
    pub(crate) chains_only: bool,
    pub(crate) can_truncate: bool,
    pub(crate) tolerance: Tolerance,
}

impl Settings {
    pub(crate) fn new(config: &CheckConfig, subject: &dyn Subject) -> Result<Self, CheckError> {
        Self::of(
            config,
            subject.vocab_size(),
            subject.max_context(),
            subject.tree_support(),
            subject.can_truncate(),
        )
    }

    pub(crate) fn of(
        config: &CheckConfig,
        vocab: usize,
        model_max: Option<usize>,
        support: TreeSupport,
        can_truncate: bool,
    ) -> Result<Self, CheckError> {
        config.validate(vocab).map_err(CheckError::Config)?;
        let max_context = config.max_context().min(model_max.unwrap_or(usize::MAX));
        if max_context < 2 {
            return Err(CheckError::Config(format!(
                "the model's max_context of {max_context} leaves no room for a check (2 tokens at least)"
            )));
        }
        Ok(Self {
            config: config.clone(),
            vocab,
            max_context,
            chains_only: support == TreeSupport::ChainsOnly,
            can_truncate,
            tolerance: Tolerance::of(config),
        })
    }

    /// Tokens are drawn below this bound when the configuration does not restrict them.
    pub(crate) fn token_bound(&self) -> Token {
        Token::try_from(self.vocab).unwrap_or(Token::MAX)
    }

    /// Replacement tokens for `old`, in the order they are tried.
    pub(crate) fn other_tokens(&self, old: Token) -> Vec<Token> {
        match self.config.tokens() {
            Some(tokens) => tokens.iter().copied().filter(|&t| t != old).collect(),
            None => {
                let bound = self.token_bound();
                (1..bound.min(64))
                    .map(|i| ((u64::from(old) + u64::from(i)) % u64::from(bound)) as Token)
                    .collect()
            }
        }
    }
}

/// Runs calls on one sequence and keeps the report.
pub(crate) struct Runner<'a> {
    pub(crate) subject: &'a mut dyn Subject,
    pub(crate) settings: &'a Settings,
    pub(crate) report: CheckReport,
    pub(crate) episode: usize,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(subject: &'a mut dyn Subject, settings: &'a Settings) -> Self {
        let support = subject.tree_support();
        Self {
            report: CheckReport::new(settings.config.seed(), support, settings.max_context),
            subject,
            settings,
            episode: 0,
        }
    }

    /// Runs the calls of one episode, then checks their rows against the recompute. An
    /// immediate violation (an error, a wrong `committed_len`) is reported after the rows
    /// observed before it, so the first violation in call order wins.
    pub(crate) fn run_episode(&mut self, ops: &[Op]) -> Result<(), Violation> {
        let mut committed = Vec::new();
        let mut observations = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Err(mut v) = self.execute(op, i, &mut committed, Some(&mut observations)) {
                v.step = i;
                self.verify(ops, &observations)?;
                return Err(v);
            }
            self.report.steps += 1;
        }
        self.verify(ops, &observations)
    }

    /// Compares every observation with the recompute, in call order; the first that
    /// disagrees is diagnosed.
    fn verify(&mut self, ops: &[Op], observations: &[Observation]) -> Result<(), Violation> {
        let expected = expected_for(
            observations.iter().map(|o| &o.context[..]),
            &mut |tokens: &[Token], positions: &[usize]| self.recompute(tokens, positions),
        )?;
        let tolerance = self.settings.tolerance;
        for obs in observations {
            let e = &expected[&obs.context];
            let mut v = match compare(&tolerance, &mut self.report, self.episode, obs, e) {
                Comparison::Agrees => continue,
                Comparison::Logits => self.diagnose(ops, obs, e),
                Comparison::Extra(kind, detail) => {
                    let tree = ops[obs.op].tree().expect("observations come from forwards");
                    Violation::new(kind, detail).at(tree, obs.node, obs.committed)
                }
            };
            v.step = obs.op;
            return Err(v);
        }
        Ok(())
    }

    /// The recompute at `positions` of the chain `tokens`, evaluated after `reset`.
    pub(crate) fn recompute(
        &mut self,
        tokens: &[Token],
        positions: &[usize],
    ) -> Result<Vec<Expected>, Violation> {
        let note = |v: Violation| {
            v.note(format!(
                "(in the recompute: a chain of {} tokens from an empty context)",
                tokens.len()
            ))
        };
        self.reset().map_err(note)?;
        let tree = chain(tokens, positions);
        let logits = self.forward(&tree).map_err(note)?;
        let mut out = Vec::with_capacity(positions.len());
        for &p in positions {
            let row = tree.logits_row(p).expect("asked for");
            if logits.row(row).iter().any(|x| x.is_nan()) {
                return Err(note(
                    Violation::new(
                        ViolationKind::RowsNotWritten,
                        format!(
                            "row {row} (node {p}) still holds NaN after the forward: the check \
                         fills the buffer with NaN first, so the model did not write it"
                        ),
                    )
                    .at(&tree, p, 0),
                ));
            }
            let (hidden, heads) = self.extras(&tree, p).map_err(note)?;
            out.push(Expected {
                logits: logits.row(row).to_vec(),
                hidden,
                heads,
                source: None,
            });
        }
        Ok(out)
    }

    /// The recompute of one context alone (its last position the only row asked for).
    pub(crate) fn pure(&mut self, context: &[Token]) -> Result<Expected, Violation> {
        Ok(self
            .recompute(context, &[context.len() - 1])?
            .pop()
            .expect("one row"))
    }

    /// One forward into a NaN-filled buffer of the right shape.
    pub(crate) fn forward(&mut self, tree: &TokenTree) -> Result<Array2<f32>, Violation> {
        let mut logits = Array2::from_elem((tree.logits_rows(), self.settings.vocab), f32::NAN);
        let result = guarded(|| self.subject.forward(tree, logits.view_mut()));
        self.report.forwards += 1;
        self.report.nodes += tree.len();
        let what = || format!("forward of {}", describe_tree(tree));
        match result {
            Err(panic) => Err(Violation::new(
                ViolationKind::Panicked,
                format!("{} panicked: {panic}", what()),
            )),
            Ok(Err(e)) => {
                let mut v = Violation::new(
                    ViolationKind::UnexpectedError,
                    format!("{} failed: {e}", what()),
                );
                if self.settings.chains_only {
                    v = v.note("the model is ChainsOnly, and this tree is a chain");
                }
                Err(v)
            }
            Ok(Ok(())) => Ok(logits),
        }
    }

    /// The row of `node` after a forward of `tree` (no other check).
    pub(crate) fn eval(&mut self, tree: &TokenTree, node: NodeId) -> Result<Vec<f32>, Violation> {
        let logits = self.forward(tree)?;
        let row = tree.logits_row(node).expect("the experiment asks for it");
        Ok(logits.row(row).to_vec())
    }

    /// The hidden state and head logits of `node` of the last forward, when exposed and
    /// checked.
    #[allow(clippy::type_complexity)]
    fn extras(
        &mut self,
        tree: &TokenTree,
        node: NodeId,
    ) -> Result<(Option<Vec<f32>>, Option<Vec<f32>>), Violation> {
        let config = &self.settings.config;
        let (hidden, heads) = (config.checks_hidden_states(), config.checks_head_logits());
        let subject = &mut *self.subject;
        let read = |what: &str, result: Result<Option<Result<Vec<f32>, String>>, String>| {
            let kind = if what.starts_with("hidden") {
                ViolationKind::HiddenStates
            } else {
                ViolationKind::HeadLogits
            };
            match result {
                Err(panic) => Err(Violation::new(
                    ViolationKind::Panicked,
                    format!("{what}({node}) panicked: {panic}"),
                )),
                Ok(Some(Err(e))) => Err(Violation::new(
                    kind,
                    format!("{what}({node}) failed for a node that asked for logits: {e}"),
                )
                .at(tree, node, 0)),
                Ok(found) => Ok(found.map(|r| r.expect("errors handled above"))),
            }
        };
        let h = if hidden {
            read("hidden_state", guarded(|| subject.hidden_state(node)))?
        } else {
            None
        };
        let k = if heads {
            read("head_logits", guarded(|| subject.head_logits(node)))?
        } else {
            None
        };
        Ok((h, k))
    }

    pub(crate) fn reset(&mut self) -> Result<(), Violation> {
        self.call("reset()", |s| s.reset())
    }

    /// A call that must succeed.
    fn call(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut dyn Subject) -> Result<(), ModelError>,
    ) -> Result<(), Violation> {
        let subject = &mut *self.subject;
        succeeded(what, guarded(|| f(subject)))
    }

    /// A call that must fail and leave `committed_len` alone.
    fn misuse(
        &mut self,
        what: &str,
        committed: usize,
        f: impl FnOnce(&mut dyn Subject) -> Result<(), ModelError>,
    ) -> Result<(), Violation> {
        let subject = &mut *self.subject;
        match guarded(|| f(subject)) {
            Err(panic) => Err(Violation::new(
                ViolationKind::Panicked,
                format!("{what} panicked instead of returning an error: {panic}"),
            )),
            Ok(Ok(())) => Err(Violation::new(
                ViolationKind::MissingError,
                format!("{what} succeeded; it must return an error"),
            )),
            Ok(Err(_)) => match self.subject.committed_len() {
                Some(len) if len != committed => Err(Violation::new(
                    ViolationKind::ErrorChangedState,
                    format!(
                        "{what} failed as it must, but committed_len() went from {committed} to {len}"
                    ),
                )),
                _ => Ok(()),
            },
        }
    }

    /// Checks `committed_len()` against the check's own count after `what`.
    fn check_len(&self, what: &str, expected: usize, before: usize) -> Result<(), Violation> {
        let Some(actual) = self.subject.committed_len() else {
            return Ok(());
        };
        if actual == expected {
            return Ok(());
        }
        let kind = if what.starts_with("commit") && actual == before && expected > before {
            ViolationKind::CommitNotAppended
        } else if what.starts_with("truncate") || what.starts_with("reset") {
            ViolationKind::TruncateWrong
        } else {
            ViolationKind::CommittedLen
        };
        Err(Violation::new(
            kind,
            format!("committed_len() is {actual} after {what}; it must be {expected}"),
        ))
    }

    /// Executes one planned call on the model. With `record`, also runs the immediate
    /// checks and records the rows observed; without, it only replays.
    pub(crate) fn execute(
        &mut self,
        op: &Op,
        step: usize,
        committed: &mut Vec<Token>,
        mut record: Option<&mut Vec<Observation>>,
    ) -> Result<(), Violation> {
        let checks = record.is_some();
        let before = committed.len();
        match op {
            Op::Reset => {
                self.reset()?;
                committed.clear();
                if checks {
                    self.check_len("reset()", 0, before)?;
                }
            }
            Op::Truncate(len) => {
                self.call(&format!("truncate({len})"), |s| s.truncate(*len))?;
                committed.truncate(*len);
                if checks {
                    self.check_len(&format!("truncate({len})"), *len, before)?;
                }
            }
            Op::Round { tree, action } => {
                self.observe(tree, step, committed, record.as_deref_mut())?;
                let path: &[NodeId] = match action {
                    Action::Commit(path) => path,
                    Action::Drop => &[],
                    Action::Leave => return Ok(()),
                };
                self.call(&format!("commit({path:?}) of the last forward"), |s| {
                    s.commit(path)
                })?;
                committed.extend(path.iter().map(|&n| tree.token(n)));
                if checks {
                    self.check_len(&format!("commit({path:?})"), committed.len(), before)?;
                }
            }
            Op::Misuse(misuse) => {
                if checks {
                    self.report.misuse_checks += 1;
                }
                self.execute_misuse(misuse, step, committed, record)?;
            }
        }
        Ok(())
    }

    fn execute_misuse(
        &mut self,
        misuse: &Misuse,
        step: usize,
        committed: &mut Vec<Token>,
        record: Option<&mut Vec<Observation>>,
    ) -> Result<(), Violation> {
        let checks = record.is_some();
        let len = committed.len();
        // Without checks (a replay), a misuse is only repeated: its outcome was checked.
        let expect_error = |runner: &mut Self, what: &str, f: &dyn Fn(&mut dyn Subject) -> _| {
            let result = runner.misuse(what, len, f);
            if checks { result } else { Ok(()) }
        };
        match misuse {
            Misuse::CommitWithoutForward => {
                expect_error(
                    self,
                    "commit([0]) with no forward since the last commit, truncate or reset",
                    &|s| s.commit(&[0]),
                )?;
            }
            Misuse::SecondCommit { tree, path } => {
                self.observe(tree, step, committed, record)?;
                self.call(&format!("commit({path:?}) of the last forward"), |s| {
                    s.commit(path)
                })?;
                committed.extend(path.iter().map(|&n| tree.token(n)));
                if checks {
                    self.check_len(&format!("commit({path:?})"), committed.len(), len)?;
                }
                let after = committed.len();
                let result = self.misuse(
                    &format!("a second commit({path:?}) of the same forward"),
                    after,
                    |s| s.commit(path),
                );
                if checks {
                    result?;
                }
            }
            Misuse::BadPath { tree, path } => {
                self.observe(tree, step, committed, record)?;
                expect_error(
                    self,
                    &format!("commit({path:?}), not a root-to-node path of the last forward"),
                    &|s| s.commit(path),
                )?;
            }
            Misuse::WrongShape { tree } | Misuse::OutOfVocab { tree } => {
                let (extra_rows, what) = match misuse {
                    Misuse::WrongShape { .. } => (
                        1,
                        format!(
                            "a forward into a logits buffer of {} rows for a tree needing {}",
                            tree.logits_rows() + 1,
                            tree.logits_rows()
                        ),
                    ),
                    _ => (
                        0,
                        format!(
                            "a forward of a tree holding token {} (the vocabulary has {})",
                            tree.tokens().last().copied().unwrap_or_default(),
                            self.settings.vocab
                        ),
                    ),
                };
                let shape = (tree.logits_rows() + extra_rows, self.settings.vocab);
                expect_error(self, &what, &|s| {
                    s.forward(tree, Array2::zeros(shape).view_mut())
                })?;
            }
        }
        Ok(())
    }

    /// A forward of `tree` on the current state; with `record`, the rows-written and
    /// `committed_len` checks and the rows kept for the recompute.
    fn observe(
        &mut self,
        tree: &TokenTree,
        step: usize,
        committed: &[Token],
        record: Option<&mut Vec<Observation>>,
    ) -> Result<(), Violation> {
        let logits = self.forward(tree)?;
        let Some(out) = record else {
            return Ok(());
        };
        self.check_len(
            &format!("a forward of {}", describe_tree(tree)),
            committed.len(),
            committed.len(),
        )?;
        for node in tree.logits_nodes() {
            let row = tree.logits_row(node).expect("asked for");
            let values = logits.row(row);
            if values.iter().any(|x| x.is_nan()) {
                let written = values.iter().filter(|x| !x.is_nan()).count();
                return Err(Violation::new(
                    ViolationKind::RowsNotWritten,
                    format!(
                        "row {row} (node {node}) holds NaN in {} of its {} entries after the \
                         forward: the check fills the buffer with NaN first, so the model did \
                         not write it{}",
                        values.len() - written,
                        values.len(),
                        if written == 0 {
                            ""
                        } else {
                            " completely (or wrote NaN)"
                        }
                    ),
                )
                .at(tree, node, committed.len()));
            }
            let (hidden, heads) = self.extras(tree, node).map_err(|mut v| {
                v.committed = committed.len();
                v
            })?;
            out.push(
                Observation::new(step, tree, node, committed, values.to_vec())
                    .with_extras(hidden, heads),
            );
        }
        Ok(())
    }
}
