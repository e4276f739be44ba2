//! The Medusa strategy: draft a candidate tree from the heads' predictions at the last
//! accepted node, verify it in one forward pass.

use std::sync::Arc;

use decoding_core::{
    CostCurve, DecodeError, DraftContext, LogitsModel, Metric, NodeId, Requirements, StepFeedback,
    Strategy, Token, TokenTree, Verifier,
};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};

use crate::candidates::CandidateTree;
use crate::context::{ContextPrior, Successors};
use crate::error::MedusaError;
use crate::heads::{HeadScratch, MedusaHeads};
use crate::ranking::{DynamicNode, DynamicSearch, PriorView, RankedHead, Sizing, best_size};
use crate::stats::MedusaStats;
use crate::typical::TypicalAcceptance;

/// Where head predictions come from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HeadSource {
    /// The library runs these heads on the final hidden state the model exposes
    /// ([`LogitsModel::hidden_states`]). Share one set between sequences through the `Arc`.
    Library(Arc<MedusaHeads>),
    /// The engine computes `num_heads` heads' logits itself ([`LogitsModel::head_logits`]).
    Engine {
        /// Heads the engine provides.
        num_heads: usize,
    },
}

impl HeadSource {
    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        match self {
            Self::Library(heads) => heads.num_heads(),
            Self::Engine { num_heads } => *num_heads,
        }
    }

    /// What the model must provide at the last accepted node.
    pub fn requirements(&self) -> Requirements {
        match self {
            Self::Library(_) => Requirements::HIDDEN_STATE,
            Self::Engine { .. } => Requirements::HEAD_LOGITS,
        }
    }

    /// Writes the logits of the first `out.nrows()` heads at `node` of the model's last
    /// forward into `out`.
    pub(crate) fn head_logits_at(
        &self,
        model: &mut dyn LogitsModel,
        node: NodeId,
        hidden: &mut Array1<f32>,
        mut out: ArrayViewMut2<'_, f32>,
        scratch: &mut HeadScratch,
    ) -> Result<(), MedusaError> {
        match self {
            Self::Library(heads) => {
                let source = model
                    .hidden_states()
                    .ok_or(DecodeError::MissingCapability("final hidden states"))?;
                if hidden.len() != source.hidden_size() {
                    *hidden = Array1::zeros(source.hidden_size());
                }
                source
                    .hidden_state(node, hidden.view_mut())
                    .map_err(DecodeError::from)?;
                heads.logits(hidden.view(), out, scratch)
            }
            Self::Engine { .. } => {
                let vocab = model.vocab_size();
                let source = model
                    .head_logits()
                    .ok_or(DecodeError::MissingCapability("decoding-head logits"))?;
                let mut all = Array2::zeros((source.num_heads(), vocab));
                source
                    .head_logits(node, all.view_mut())
                    .map_err(DecodeError::from)?;
                if all.nrows() < out.nrows() {
                    return Err(MedusaError::Mismatch(format!(
                        "the engine computes {} heads, {} are needed",
                        all.nrows(),
                        out.nrows()
                    )));
                }
                let rows = out.nrows();
                out.assign(&first_rows(all.view(), rows));
                Ok(())
            }
        }
    }
}

/// The shape of each step's candidate tree.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TreePolicy {
    /// The same (head, rank) paths every step: the paper's sparse trees, its
    /// `mc_sim_7b_63` preset, or a Cartesian product. Cut to the step's node budget by
    /// keeping a prefix of the nodes.
    Static(CandidateTree),
    /// A tree chosen each step from the heads' probabilities; see [`DynamicTree`].
    Dynamic(DynamicTree),
}

/// Dynamic candidate trees: each step, the paths of highest *estimated acceptance*, a
/// path's estimate being the product of its tokens' softmax probabilities under their heads,
/// chosen best-first up to the node budget. Where the heads are confident the tree grows
/// deep and narrow, where they are not it spreads over many candidates of the first heads;
/// it is the paper's greedy sparse-tree construction applied to this step's probabilities
/// instead of average rank accuracies.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicTree {
    max_nodes: Option<usize>,
    min_score: f32,
    cost: Option<CostCurve>,
    head_cost: f64,
    prior: Option<ContextPrior>,
}

impl Default for DynamicTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DynamicTree {
    /// Fills the decoder's node budget every step.
    pub fn new() -> Self {
        Self {
            max_nodes: None,
            min_score: 0.0,
            cost: None,
            head_cost: 0.0,
            prior: None,
        }
    }

    /// At most `max_nodes` nodes (root included, at least 1), within the decoder's budget.
    pub fn with_max_nodes(mut self, max_nodes: usize) -> Result<Self, MedusaError> {
        if max_nodes == 0 {
            return Err(MedusaError::config(
                "a tree needs at least 1 node (the root)",
            ));
        }
        self.max_nodes = Some(max_nodes);
        Ok(self)
    }

    /// Leaves out paths whose estimated acceptance is below `min_score` (in [0, 1)): a
    /// cost-aware cut for hardware on which every node costs time. A node pays for itself
    /// when its estimate exceeds its marginal cost as a fraction of a step's.
    pub fn with_min_score(mut self, min_score: f32) -> Result<Self, MedusaError> {
        if !(0.0..1.0).contains(&min_score) {
            return Err(MedusaError::config(format!(
                "min_score must be in [0, 1), got {min_score}"
            )));
        }
        self.min_score = min_score;
        Ok(self)
    }

    /// Sizes each step's tree for speed on hardware whose forward cost grows with the tree
    /// (`cost`, measured with [`CostCurve::measure`]): keeps the `n` best nodes that maximise
    /// expected tokens per unit of time, `(1 + sum of their estimates) / cost(n)`. The heads'
    /// own cost is not in the curve: it is paid whenever the tree has more than the root.
    pub fn with_cost(mut self, cost: CostCurve) -> Self {
        self.cost = Some(cost);
        self
    }

    /// The cost of evaluating one head, in the unit of the cost curve (for heads run by the
    /// library on a CPU, a sizeable fraction of a single-node forward): with it, a
    /// cost-sized tree only reaches a depth whose head pays for itself. At least 0.
    pub fn with_head_cost(mut self, head_cost: f64) -> Result<Self, MedusaError> {
        if !(head_cost.is_finite() && head_cost >= 0.0) {
            return Err(MedusaError::config(format!(
                "head_cost must be finite and >= 0, got {head_cost}"
            )));
        }
        self.head_cost = head_cost;
        Ok(self)
    }

    /// The cost of one head, in the unit of the cost curve.
    pub fn head_cost(&self) -> f64 {
        self.head_cost
    }

    /// Re-weights candidates by the context prior (see [`ContextPrior`]): a candidate that
    /// already followed its parent token in the prompt or output counts for more. This is
    /// this library's addition to Medusa; it only re-orders the heads' candidates.
    pub fn with_context_prior(mut self, prior: ContextPrior) -> Self {
        self.prior = Some(prior);
        self
    }

    /// The context prior, if any.
    pub fn context_prior(&self) -> Option<&ContextPrior> {
        self.prior.as_ref()
    }

    /// The cost curve, if the tree is sized by cost.
    pub fn cost(&self) -> Option<&CostCurve> {
        self.cost.as_ref()
    }

    /// The node cap, if any.
    pub fn max_nodes(&self) -> Option<usize> {
        self.max_nodes
    }

    /// The estimate floor.
    pub fn min_score(&self) -> f32 {
        self.min_score
    }
}

/// How drafts are verified.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Acceptance {
    /// decoding-core's exact verifier: token-identical to plain greedy decoding, and
    /// identically distributed (in fact seed-identical) under sampling. The default.
    #[default]
    Exact,
    /// Typical acceptance, LOSSY under sampling: see [`TypicalAcceptance`].
    TypicalLossy(TypicalAcceptance),
}

/// The strategy's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MedusaConfig {
    tree: TreePolicy,
    acceptance: Acceptance,
}

impl Default for MedusaConfig {
    /// Dynamic trees filling the decoder's node budget, re-weighted by the default
    /// [`ContextPrior`], and exact acceptance.
    fn default() -> Self {
        let tree = DynamicTree::new().with_context_prior(ContextPrior::default());
        Self::new(TreePolicy::Dynamic(tree))
    }
}

impl MedusaConfig {
    /// Trees of this policy, exact acceptance.
    pub fn new(tree: TreePolicy) -> Self {
        Self {
            tree,
            acceptance: Acceptance::Exact,
        }
    }

    /// Verifies with `acceptance`.
    pub fn with_acceptance(mut self, acceptance: Acceptance) -> Self {
        self.acceptance = acceptance;
        self
    }

    /// The tree policy.
    pub fn tree(&self) -> &TreePolicy {
        &self.tree
    }

    /// The acceptance rule.
    pub fn acceptance(&self) -> Acceptance {
        self.acceptance
    }
}

/// Medusa decoding (Cai et al., 2024) as a sans-IO [`Strategy`]; see the crate docs.
#[derive(Clone, Debug)]
pub struct Medusa {
    heads: HeadSource,
    config: MedusaConfig,
    vocab_size: usize,
    /// The last accepted node's hidden state (library heads) or head logits (engine heads)
    /// is waiting in `hidden` / `engine_logits`.
    has_input: bool,
    hidden: Array1<f32>,
    engine_logits: Array2<f32>,
    head_row: Array1<f32>,
    head_scratch: HeadScratch,
    heads_evaluated: usize,
    ranked: Vec<RankedHead>,
    order: Vec<u32>,
    search: DynamicSearch,
    successors: Successors,
    dynamic: Vec<DynamicNode>,
    placed: Vec<Option<NodeId>>,
    /// (depth, rank) of each node of the drafted tree; empty when the step used no heads.
    drafted: Vec<(usize, usize)>,
    /// The search's score of each node of a dynamic tree (empty for static trees).
    scores: Vec<f32>,
    accepted_path: Vec<(usize, usize)>,
    stack: Vec<(NodeId, f64)>,
    path: Vec<NodeId>,
    stats: MedusaStats,
}

impl Medusa {
    /// Medusa over `heads` with `config`. Fails if a static tree is deeper than the heads.
    pub fn new(heads: HeadSource, config: MedusaConfig) -> Result<Self, MedusaError> {
        if heads.num_heads() == 0 {
            return Err(MedusaError::NoHeads);
        }
        if let TreePolicy::Static(tree) = &config.tree {
            tree.check_heads(heads.num_heads())?;
        }
        Ok(Self {
            heads,
            config,
            vocab_size: 0,
            has_input: false,
            hidden: Array1::zeros(0),
            engine_logits: Array2::zeros((0, 0)),
            head_row: Array1::zeros(0),
            head_scratch: HeadScratch::default(),
            heads_evaluated: 0,
            ranked: Vec::new(),
            order: Vec::new(),
            search: DynamicSearch::default(),
            successors: Successors::default(),
            dynamic: Vec::new(),
            placed: Vec::new(),
            drafted: Vec::new(),
            scores: Vec::new(),
            accepted_path: Vec::new(),
            stack: Vec::new(),
            path: Vec::new(),
            stats: MedusaStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MedusaConfig {
        &self.config
    }

    /// Where head predictions come from.
    pub fn heads(&self) -> &HeadSource {
        &self.heads
    }

    /// Statistics of the current sequence.
    pub fn stats(&self) -> &MedusaStats {
        &self.stats
    }

    /// Ranks the best `width` candidates of head `d`, computing its logits first when the
    /// library runs the heads.
    fn rank_head(&mut self, d: usize, width: usize, with_probs: bool) -> Result<(), DecodeError> {
        if self.ranked.len() <= d {
            self.ranked.resize_with(d + 1, RankedHead::default);
        }
        let row = match &self.heads {
            HeadSource::Library(heads) => {
                if self.head_row.len() != heads.vocab_size() {
                    self.head_row = Array1::zeros(heads.vocab_size());
                }
                heads.head_logits(
                    d,
                    self.hidden.view(),
                    self.head_row.view_mut(),
                    &mut self.head_scratch,
                )?;
                self.head_row.view()
            }
            HeadSource::Engine { .. } => self.engine_logits.row(d),
        };
        let row = row
            .to_slice()
            .ok_or(DecodeError::Contract("head logits are not contiguous"))?;
        self.ranked[d].rank(row, width, with_probs, &mut self.order);
        self.heads_evaluated = self.heads_evaluated.max(d + 1);
        Ok(())
    }

    /// Ranks the best `widths[d]` candidates of each head `d < widths.len()`.
    fn rank_heads(&mut self, widths: &[usize], with_probs: bool) -> Result<(), DecodeError> {
        for (d, &width) in widths.iter().enumerate() {
            self.rank_head(d, width, with_probs)?;
        }
        Ok(())
    }

    /// The chain of every head's best candidate, for chains-only models.
    fn draft_chain(&mut self, depth: usize, tree: &mut TokenTree) -> Result<(), DecodeError> {
        self.rank_heads(&vec![1; depth], false)?;
        let mut node = 0;
        for d in 0..depth {
            let Some(&token) = self.ranked[d].tokens.first() else {
                break;
            };
            node = tree.push(node, token)?;
            self.drafted.push((d + 1, 0));
        }
        Ok(())
    }

    fn draft_static(
        &mut self,
        candidates: &CandidateTree,
        budget: usize,
        depth: usize,
        tree: &mut TokenTree,
    ) -> Result<(), DecodeError> {
        let limit = candidates.len().min(budget);
        let widths: Vec<usize> = (1..=depth)
            .map(|d| candidates.ranks_needed(d, limit))
            .collect();
        self.rank_heads(&widths, false)?;
        self.placed.clear();
        self.placed.push(Some(0));
        for node in &candidates.nodes()[1..limit] {
            let parent = self.placed[node.parent];
            let token = (node.depth <= depth)
                .then(|| self.ranked[node.depth - 1].tokens.get(node.rank))
                .flatten();
            let placed = match (parent, token) {
                (Some(parent), Some(&token)) => {
                    self.drafted.push((node.depth, node.rank));
                    Some(tree.push(parent, token)?)
                }
                _ => None,
            };
            self.placed.push(placed);
        }
        Ok(())
    }

    fn draft_dynamic(
        &mut self,
        policy: &DynamicTree,
        ctx: &DraftContext<'_>,
        depth: usize,
        tree: &mut TokenTree,
    ) -> Result<(), DecodeError> {
        let budget = policy
            .max_nodes
            .map_or(ctx.max_nodes, |m| m.min(ctx.max_nodes));
        let depth = depth.min(budget - 1);
        let cost = policy
            .cost
            .as_ref()
            .map(|curve| curve.per_sequence(ctx.batch_size));
        if policy.prior.is_some() {
            self.successors.update(ctx.tokens);
        }
        // Heads are evaluated lazily: head d only once the search wants depth d + 1.
        let mut ranked = 0;
        loop {
            let prior = policy.prior.as_ref().map(|prior| PriorView {
                prior,
                successors: &self.successors,
            });
            let sizing = cost.as_deref().map(|cost| Sizing {
                cost,
                head_cost: policy.head_cost,
            });
            let wants_deeper = self.search.build(
                &self.ranked[..ranked],
                ctx.pending(),
                budget,
                policy.min_score,
                prior,
                sizing,
                &mut self.dynamic,
            );
            if !wants_deeper || ranked == depth {
                break;
            }
            self.rank_head(ranked, budget - ranked - 1, true)?;
            ranked += 1;
        }
        if let Some(cost) = cost.as_deref() {
            let sizing = Sizing {
                cost,
                head_cost: policy.head_cost,
            };
            let keep = best_size(&self.dynamic, sizing, self.search.heads_paid().min(ranked));
            self.dynamic.truncate(keep);
        }
        self.placed.clear();
        self.placed.push(Some(0));
        self.scores.push(1.0);
        for node in &self.dynamic[1..] {
            let parent = self.placed[node.parent].unwrap_or(0);
            let id = tree.push(parent, node.token)?;
            self.placed.push(Some(id));
            self.drafted.push((node.depth, node.rank));
            self.scores.resize(tree.len(), 0.0);
            self.scores[id] = self.scores[id].max(node.score.clamp(0.0, 1.0));
        }
        Ok(())
    }

    /// Keeps the head input of this step for the next draft.
    fn take_input(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        match &self.heads {
            HeadSource::Library(heads) => {
                let hidden = feedback
                    .hidden_state
                    .ok_or(DecodeError::MissingCapability("final hidden states"))?;
                if hidden.len() != heads.hidden_size() {
                    return Err(MedusaError::Mismatch(format!(
                        "the model's hidden state has {} values, the heads read {}",
                        hidden.len(),
                        heads.hidden_size()
                    ))
                    .into());
                }
                if self.hidden.len() != hidden.len() {
                    self.hidden = Array1::zeros(hidden.len());
                }
                self.hidden.assign(&hidden);
            }
            HeadSource::Engine { num_heads } => {
                let logits = feedback
                    .head_logits
                    .ok_or(DecodeError::MissingCapability("decoding-head logits"))?;
                if logits.nrows() < *num_heads {
                    return Err(MedusaError::Mismatch(format!(
                        "the engine gave {} head rows, {num_heads} are configured",
                        logits.nrows()
                    ))
                    .into());
                }
                if logits.ncols() != self.vocab_size {
                    return Err(DecodeError::VocabMismatch {
                        expected: self.vocab_size,
                        actual: logits.ncols(),
                    });
                }
                let rows = first_rows(logits, *num_heads);
                if self.engine_logits.dim() != rows.dim() {
                    self.engine_logits = Array2::zeros(rows.dim());
                }
                self.engine_logits.assign(&rows);
            }
        }
        self.has_input = true;
        Ok(())
    }
}

impl Strategy for Medusa {
    fn name(&self) -> &str {
        "medusa"
    }

    fn begin(&mut self, _prompt: &[Token], vocab_size: usize) -> Result<(), DecodeError> {
        if let HeadSource::Library(heads) = &self.heads
            && heads.vocab_size() != vocab_size
        {
            return Err(DecodeError::VocabMismatch {
                expected: vocab_size,
                actual: heads.vocab_size(),
            });
        }
        self.vocab_size = vocab_size;
        self.has_input = false;
        self.drafted.clear();
        self.successors.clear();
        self.stats = MedusaStats::default();
        Ok(())
    }

    fn draft(&mut self, ctx: &DraftContext<'_>, tree: &mut TokenTree) -> Result<(), DecodeError> {
        self.drafted.clear();
        self.scores.clear();
        self.heads_evaluated = 0;
        let depth = ctx.max_depth.min(self.heads.num_heads());
        if !self.has_input || depth == 0 || ctx.max_nodes <= 1 {
            return Ok(());
        }
        self.drafted.push((0, 0));
        if ctx.chains_only {
            let depth = match &self.config.tree {
                TreePolicy::Static(t) => depth.min(t.max_depth()),
                TreePolicy::Dynamic(_) => depth,
            };
            return self.draft_chain(depth.min(ctx.max_nodes - 1), tree);
        }
        // Lend the policy out of `self` for the step (the placeholder allocates nothing).
        let placeholder = TreePolicy::Dynamic(DynamicTree::new());
        let policy = std::mem::replace(&mut self.config.tree, placeholder);
        let drafted = match &policy {
            TreePolicy::Static(candidates) => {
                let depth = depth.min(candidates.max_depth());
                self.draft_static(candidates, ctx.max_nodes, depth, tree)
            }
            TreePolicy::Dynamic(dynamic) => self.draft_dynamic(dynamic, ctx, depth, tree),
        };
        self.config.tree = policy;
        drafted
    }

    fn observe(&mut self, feedback: &StepFeedback<'_>) -> Result<(), DecodeError> {
        if !self.drafted.is_empty() {
            let path = &feedback.verification.path;
            let accepted = path.len().saturating_sub(1).min(feedback.emitted.len());
            self.accepted_path.clear();
            self.accepted_path.extend(
                path[1..=accepted]
                    .iter()
                    .filter_map(|&n| self.drafted.get(n)),
            );
            let max_depth = self.drafted.iter().map(|&(d, _)| d).max().unwrap_or(0);
            self.stats.record(
                self.drafted.len() - 1,
                max_depth,
                self.heads_evaluated,
                &self.accepted_path,
            );
        }
        self.take_input(feedback)
    }

    fn requirements(&self) -> Requirements {
        self.heads.requirements()
    }

    fn verify(&mut self, verifier: &mut Verifier<'_>) -> Result<(), DecodeError> {
        match self.config.acceptance {
            Acceptance::Exact => verifier.exact(),
            Acceptance::TypicalLossy(typical) => {
                typical.verify(verifier, &mut self.stack, &mut self.path)
            }
        }
    }

    fn prunable(&self) -> bool {
        true
    }

    /// Dynamic trees: each node's score (the product of its path's re-weighted head
    /// probabilities, capped at 1), uncalibrated; static trees have none.
    fn draft_scores(&self) -> Option<&[f32]> {
        (!self.scores.is_empty()).then_some(self.scores.as_slice())
    }

    fn is_lossless(&self) -> bool {
        self.config.acceptance == Acceptance::Exact
    }

    fn metrics(&self) -> Vec<Metric> {
        self.stats.metrics()
    }
}

/// The first `n` rows of `a`.
fn first_rows(mut a: ArrayView2<'_, f32>, n: usize) -> ArrayView2<'_, f32> {
    a.slice_axis_inplace(ndarray::Axis(0), ndarray::Slice::from(0..n));
    a
}
