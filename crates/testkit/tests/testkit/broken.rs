//! Each broken model is caught, as the right class of violation, with a useful report.

use decoding_core::{BatchLogitsModel, PerSequence};
use decoding_testkit::broken::{BrokenModel, Bug};
use decoding_testkit::{CheckConfig, CheckError, ViolationKind, check_batch_model, check_model};

fn caught(bug: Bug, config: &CheckConfig) -> CheckError {
    try_caught(bug, config).unwrap_or_else(|report| panic!("{bug:?} passed the check:\n{report}"))
}

fn try_caught(bug: Bug, config: &CheckConfig) -> Result<CheckError, String> {
    let mut model = BrokenModel::new(16, bug);
    match check_model(&mut model, config) {
        Ok(report) => Err(report.to_string()),
        Err(e) => Ok(e),
    }
}

/// The bug is caught as `kind` under several seeds, and the report says where and how.
fn assert_caught(bug: Bug, kind: ViolationKind) {
    let seeds: u64 = std::env::var("TESTKIT_SEEDS").map_or(6, |s| s.parse().unwrap());
    let mut missed = 0;
    for seed in 0..seeds {
        let config = CheckConfig::default().with_seed(seed);
        let Ok(error) = try_caught(bug, &config) else {
            missed += 1;
            assert!(seeds > 6, "{bug:?} passed the check with seed {seed}");
            continue;
        };
        let v = error
            .violation()
            .unwrap_or_else(|| panic!("{bug:?}: not a violation: {error}"));
        assert_eq!(v.kind, kind, "{bug:?}, seed {seed}:\n{error}");
        assert_eq!(v.seed, seed);
        let text = error.to_string();
        assert!(text.contains(kind.title()), "{text}");
        assert!(text.contains("fix: "), "{text}");
        assert!(text.contains(&format!("episode {}", v.episode)), "{text}");
        assert_eq!(v.history.len(), v.step + 1, "{text}");
    }
    if missed > 0 {
        eprintln!("{bug:?}: passed {missed} of {seeds} seeds");
    }
}

#[test]
fn a_correct_model_passes() {
    for seed in 0..6 {
        let config = CheckConfig::default().with_seed(seed);
        let report = check_model(&mut BrokenModel::new(16, Bug::None), &config).unwrap();
        assert!(report.is_bit_exact(), "{report}");
        assert!(report.logits.rows > 100, "{report}");
        assert!(report.hidden_states.rows > 100, "{report}");
        assert!(report.misuse_checks > 0, "{report}");
    }
}

#[test]
fn attention_leak_is_caught() {
    assert_caught(Bug::AttentionLeak, ViolationKind::AttentionLeak);
    let error = caught(Bug::AttentionLeak, &CheckConfig::default());
    let text = error.to_string();
    assert!(
        text.contains("alone (token") && text.contains("is enough"),
        "{text}"
    );
    assert!(text.contains("causal mask over node"), "{text}");
    let v = error.violation().unwrap();
    let diff = v.diff.as_ref().unwrap();
    assert!(diff.max_abs_diff > 0.0);
    assert_eq!(v.node.map(|n| v.path.last() == Some(&n)), Some(true));
}

#[test]
fn wrong_position_is_caught() {
    assert_caught(Bug::WrongPosition, ViolationKind::WrongPosition);
}

#[test]
fn commit_not_appended_is_caught() {
    assert_caught(Bug::CommitNotAppended, ViolationKind::CommitNotAppended);
    let text = caught(Bug::CommitNotAppended, &CheckConfig::default()).to_string();
    assert!(text.contains("spoils the cache"), "{text}");
}

#[test]
fn truncate_wrong_is_caught() {
    assert_caught(Bug::TruncateWrong, ViolationKind::TruncateWrong);
}

#[test]
fn tree_composition_is_caught_exactly_and_passes_with_a_tolerance() {
    assert_caught(Bug::TreeComposition, ViolationKind::TreeComposition);
    let config = CheckConfig::default().with_tolerance(1e-3);
    let report = check_model(&mut BrokenModel::new(16, Bug::TreeComposition), &config).unwrap();
    assert!(!report.is_bit_exact());
    assert!(report.logits.max_abs_diff > 0.0 && report.logits.max_abs_diff < 1e-3);
}

#[test]
fn plain_violations_are_caught() {
    assert_caught(Bug::RowsNotWritten, ViolationKind::RowsNotWritten);
    assert_caught(Bug::CommittedLen, ViolationKind::CommittedLen);
    assert_caught(Bug::SecondCommitAccepted, ViolationKind::MissingError);
    assert_caught(Bug::HiddenStates, ViolationKind::HiddenStates);
    let config = CheckConfig::default().with_hidden_states(false);
    assert!(check_model(&mut BrokenModel::new(16, Bug::HiddenStates), &config).is_ok());
}

#[test]
fn broken_models_are_caught_in_batches_too() {
    for (bug, kind) in [
        (Bug::AttentionLeak, ViolationKind::AttentionLeak),
        (Bug::WrongPosition, ViolationKind::WrongPosition),
        (Bug::CommitNotAppended, ViolationKind::CommitNotAppended),
        (Bug::TreeComposition, ViolationKind::TreeComposition),
    ] {
        let mut model = PerSequence::new(|| BrokenModel::new(16, bug));
        let error = check_batch_model(&mut model, &CheckConfig::default()).unwrap_err();
        assert_eq!(error.kind(), Some(kind), "{bug:?}:\n{error}");
        let _ = model.vocab_size();
    }
}

#[test]
fn invalid_configurations_are_errors() {
    let mut model = BrokenModel::new(16, Bug::None);
    let error = check_model(&mut model, &CheckConfig::default().with_tokens([99])).unwrap_err();
    assert!(matches!(error, CheckError::Config(_)), "{error}");
    assert!(error.to_string().contains("token 99"));
}

/// A correct model that shifts the logits of every seventh forward by an amount that
/// changes from call to call (as a data race or uninitialised memory would).
struct Flaky {
    inner: BrokenModel,
    calls: u64,
}

impl decoding_core::LogitsModel for Flaky {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn committed_len(&self) -> usize {
        self.inner.committed_len()
    }
    fn forward(
        &mut self,
        tree: &decoding_core::TokenTree,
        mut logits: ndarray::ArrayViewMut2<'_, f32>,
    ) -> Result<(), decoding_core::ModelError> {
        self.inner.forward(tree, logits.view_mut())?;
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            let shift = (self.calls.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / 1e6;
            logits.iter_mut().for_each(|x| *x += shift);
        }
        Ok(())
    }
    fn commit(&mut self, path: &[decoding_core::NodeId]) -> Result<(), decoding_core::ModelError> {
        self.inner.commit(path)
    }
    fn truncate(&mut self, len: usize) -> Result<(), decoding_core::ModelError> {
        self.inner.truncate(len)
    }
}

#[test]
fn nondeterminism_is_caught() {
    for seed in 0..20 {
        let mut model = Flaky {
            inner: BrokenModel::new(16, Bug::None),
            calls: 0,
        };
        let error = check_model(&mut model, &CheckConfig::default().with_seed(seed)).unwrap_err();
        assert_eq!(
            error.kind(),
            Some(ViolationKind::Nondeterministic),
            "seed {seed}:\n{error}"
        );
    }
}
