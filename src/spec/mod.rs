//! Strategy specifications: `name[:key=value,...]` strings, as the eval runner, the demo and
//! the serving example take them (`greedy`, `jacobi:k=8`, `lookahead:w=15,n=5,g=15`, ...).
//!
//! [`parse`] turns a specification into a [`StrategyFactory`], built once per run (it may load
//! weights, such as Medusa heads); the factory then builds one fresh [`Strategy`] per sequence
//! from that sequence's [`CaseInputs`] (its prompt and reference documents).

use std::collections::BTreeMap;
use std::path::Path;

use decoding_core::{CostCurve, Strategy, Token};

mod composite;
mod draft;

pub use composite::{
    COMPOSITE_SOURCES, COMPOSITE_SOURCES_COST_AWARE, COMPOSITE_SOURCES_WITH_HEADS,
};
pub use draft::DRAFT_LAYERS;

/// A malformed or unknown specification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// No strategy of that name.
    #[error("unknown strategy `{0}` (known: {known})", known = KNOWN.join(", "))]
    UnknownStrategy(String),
    /// An option the strategy does not take.
    #[error("strategy `{strategy}` has no option `{key}` (options: {options})")]
    UnknownOption {
        /// The strategy.
        strategy: String,
        /// The option given.
        key: String,
        /// The options it takes.
        options: String,
    },
    /// An option value that does not parse or is out of range.
    #[error("option `{key}`: {message}")]
    BadValue {
        /// The option.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Something the strategy needs that the environment lacks (a weights file, ...).
    #[error("{0}")]
    Unavailable(String),
    /// The strategy's own configuration check failed.
    #[error(transparent)]
    Decode(#[from] decoding_core::DecodeError),
}

/// Strategy names [`parse`] knows.
pub const KNOWN: &[&str] = &[
    "greedy",
    "jacobi",
    "lookahead",
    "reference",
    "medusa",
    "draft",
    "composite",
];

/// What a factory may use when it is built: the model's vocabulary, directory, the model
/// itself and its measured cost curve.
#[derive(Clone, Copy, Debug)]
pub struct SpecEnv<'a> {
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// The model's directory (config, weights, optional Medusa heads), if any.
    pub model_dir: Option<&'a Path>,
    /// The model, if any: `draft` drafts with its first layers, sharing its weights.
    pub model: Option<&'a llama_cpu::Llama>,
    /// The model's forward cost by tree size, if measured ([`CostCurve::measure`]): what
    /// `cost=auto` means, and what plain `composite` sizes its trees by.
    pub cost_curve: Option<&'a CostCurve>,
}

impl<'a> SpecEnv<'a> {
    /// An environment with a vocabulary size only (no model directory, no cost curve).
    pub fn new(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            model_dir: None,
            model: None,
            cost_curve: None,
        }
    }

    /// With the model (whose weights `draft` shares).
    pub fn with_model(self, model: &'a llama_cpu::Llama) -> Self {
        Self {
            model: Some(model),
            ..self
        }
    }

    /// With the model's directory.
    pub fn with_model_dir(self, dir: &'a Path) -> Self {
        Self {
            model_dir: Some(dir),
            ..self
        }
    }

    /// With the model's measured cost curve.
    pub fn with_cost_curve(self, curve: &'a CostCurve) -> Self {
        Self {
            cost_curve: Some(curve),
            ..self
        }
    }
}

/// What a strategy may read about one sequence before decoding it.
#[derive(Clone, Copy, Debug)]
pub struct CaseInputs<'a> {
    /// The prompt.
    pub prompt: &'a [Token],
    /// Reference documents the output may copy from (may be empty).
    pub references: &'a [Vec<Token>],
}

/// Builds one strategy per sequence.
pub trait StrategyFactory {
    /// The specification, normalised with every option spelled out.
    fn describe(&self) -> String;

    /// A fresh strategy for one sequence.
    fn build(&self, case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError>;
}

/// The `key=value` options of a specification, consumed as they are read so that unknown
/// keys are reported.
#[derive(Clone, Debug)]
pub struct SpecOptions {
    strategy: String,
    values: BTreeMap<String, String>,
    read: Vec<&'static str>,
}

impl SpecOptions {
    /// Splits `name:key=value,key=value` into the name and its options.
    pub fn split(spec: &str) -> Result<(String, Self), SpecError> {
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let name = name.trim().to_string();
        let mut values = BTreeMap::new();
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| SpecError::BadValue {
                key: pair.to_string(),
                message: "expected key=value".to_string(),
            })?;
            let key = key.trim().to_string();
            if values
                .insert(key.clone(), value.trim().to_string())
                .is_some()
            {
                return Err(SpecError::BadValue {
                    key,
                    message: "given twice".to_string(),
                });
            }
        }
        Ok((
            name.clone(),
            Self {
                strategy: name,
                values,
                read: Vec::new(),
            },
        ))
    }

    /// The raw value of `key`, if given.
    pub fn get(&mut self, key: &'static str) -> Option<String> {
        self.read.push(key);
        self.values.remove(key)
    }

    /// `key` parsed as `T`, or `default` when absent.
    pub fn parse_or<T: std::str::FromStr>(
        &mut self,
        key: &'static str,
        default: T,
    ) -> Result<T, SpecError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e: T::Err| SpecError::BadValue {
                key: key.to_string(),
                message: format!("`{raw}`: {e}"),
            }),
        }
    }

    /// Hands every option of `keys` that was given, except those of `skip` (options the arm
    /// reads itself), to a configuration's `set`, in the order of `keys`; an error names the
    /// option.
    pub fn apply<E: std::fmt::Display>(
        &mut self,
        keys: &[&'static str],
        skip: &[&str],
        mut set: impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), SpecError> {
        for &key in keys.iter().filter(|key| !skip.contains(key)) {
            if let Some(value) = self.get(key) {
                set(key, &value).map_err(|e| SpecError::BadValue {
                    key: key.to_string(),
                    message: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// Fails if any option was not read.
    pub fn finish(self) -> Result<(), SpecError> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(SpecError::UnknownOption {
                strategy: self.strategy,
                key,
                options: if self.read.is_empty() {
                    "none".to_string()
                } else {
                    self.read.join(", ")
                },
            }),
        }
    }
}

/// Parses a specification into a factory. `draft` is documented in `spec/draft.rs`
/// (`draft[:layers=L,mode=chain|tree,k=K,...]`).
pub fn parse(spec: &str, env: &SpecEnv<'_>) -> Result<Box<dyn StrategyFactory>, SpecError> {
    let (name, options) = SpecOptions::split(spec)?;
    match name.as_str() {
        "greedy" | "plain" => {
            options.finish()?;
            Ok(Box::new(PlainFactory))
        }
        "jacobi" => Ok(Box::new(JacobiFactory::parse(options)?)),
        "lookahead" => Ok(Box::new(LookaheadFactory::parse(options)?)),
        "reference" => Ok(Box::new(ReferenceFactory::parse(options, env)?)),
        "medusa" => Ok(Box::new(MedusaFactory::parse(options, env)?)),
        "draft" => Ok(Box::new(draft::DraftFactory::parse(options, env)?)),
        "composite" => Ok(Box::new(composite::CompositeFactory::parse(options, env)?)),
        _ => Err(SpecError::UnknownStrategy(name)),
    }
}

/// Plain decoding, one token per forward pass (greedy or sampled, as the decode config says).
struct PlainFactory;

impl StrategyFactory for PlainFactory {
    fn describe(&self) -> String {
        "greedy".to_string()
    }

    fn build(&self, _case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        Ok(Box::new(decoding_core::Plain))
    }
}

/// `jacobi[:k=K,init=prompt[:SEED]|last|pad:TOKEN|ngram]`: Jacobi decoding with a window of `k`
/// guesses (default 8), first guesses from `init` (default `prompt:0`). The options are
/// [`jacobi::JacobiConfig`]'s, parsed and written by it.
struct JacobiFactory {
    config: jacobi::JacobiConfig,
}

impl JacobiFactory {
    fn parse(mut options: SpecOptions) -> Result<Self, SpecError> {
        let bad = |key: &str, message: String| SpecError::BadValue {
            key: key.to_string(),
            message,
        };
        let mut config = jacobi::JacobiConfig::default();
        options.apply(jacobi::JacobiConfig::KEYS, &[], |k, v| config.set(k, v))?;
        options.finish()?;
        config.validate().map_err(|e| match &e {
            jacobi::ConfigError::Invalid { field, .. } => bad(field, e.to_string()),
            _ => bad("jacobi", e.to_string()),
        })?;
        Ok(Self { config })
    }
}

impl StrategyFactory for JacobiFactory {
    fn describe(&self) -> String {
        format!("jacobi:{}", self.config)
    }

    fn build(&self, _case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        let jacobi = jacobi::Jacobi::new(self.config)
            .map_err(|e| SpecError::Decode(decoding_core::DecodeError::from(e)))?;
        Ok(Box::new(jacobi))
    }
}

/// `lookahead[:w=W,n=N,g=G,pool=prompt|none,output=BOOL,ext=E,init=...,logits=top|all,fill=pool|init]`:
/// lookahead decoding (defaults: the paper's W = 15, N = 5, G = 15; the pool learns from the
/// window and the output, `pool=prompt` also seeds it from the prompt; candidates extend up to
/// `ext` tokens past N - 1 through the pool, default 16, 0 for the paper's fixed length). The
/// paper's step is `(W + G) * (N - 1)` nodes: give the decoder that node budget. The options
/// are [`lookahead::LookaheadConfig`]'s, parsed and written by it.
struct LookaheadFactory {
    config: lookahead::LookaheadConfig,
}

impl LookaheadFactory {
    fn parse(mut options: SpecOptions) -> Result<Self, SpecError> {
        let bad = |key: &str, message: String| SpecError::BadValue {
            key: key.to_string(),
            message,
        };
        let mut config = lookahead::LookaheadConfig::default();
        options.apply(lookahead::LookaheadConfig::KEYS, &[], |k, v| {
            config.set(k, v)
        })?;
        options.finish()?;
        config
            .validate()
            .map_err(|e| bad(e.option().unwrap_or("lookahead"), e.to_string()))?;
        Ok(Self { config })
    }
}

impl StrategyFactory for LookaheadFactory {
    fn describe(&self) -> String {
        format!("lookahead:{}", self.config)
    }

    fn build(&self, _case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        let lookahead = lookahead::Lookahead::new(self.config)
            .map_err(|e| SpecError::Decode(decoding_core::DecodeError::from(e)))?;
        Ok(Box::new(lookahead))
    }
}

/// `reference[:mode=suffix|llma|pld,k=K,n=N,nodes=M,tree=BOOL,min_prob=P,alpha=A,occ=O,weight=W,periodic=BOOL,refs=BOOL,context=BOOL,cost=K:C/K:C/...]`:
/// inference with reference, drafting from the case's reference documents and its prompt and
/// output. `mode` picks a preset (default `suffix`): `suffix` (longest match anywhere, a
/// frequency-weighted tree of up to `nodes` = 24 nodes, depth up to `k` = 32 and `alpha` = 3
/// times the match length), `llma` (LLMA: references only, `n` = 1, `k` = 19, i.e. the paper's
/// block of 20), `pld` (prompt lookup: prompt and output, n-grams of `n` = 3 down to 1,
/// `k` = 10). `n` is the shortest match for `suffix` and `llma`, the longest for `pld`.
/// `cost` (suffix mode) is the model's forward cost by tree size, such as
/// `cost=1:1/2:1.45/4:2.1/8:3.5/16:7.4`: each step then keeps only the nodes that pay for
/// themselves under the learned acceptance estimates.
struct ReferenceFactory {
    config: reference::ReferenceConfig,
}

impl ReferenceFactory {
    fn parse(mut options: SpecOptions, env: &SpecEnv<'_>) -> Result<Self, SpecError> {
        let mut config = reference::ReferenceConfig::suffix();
        // `mode` is the first key: it picks the preset the others adjust. `cost` may be
        // `auto`, which only the environment knows.
        options.apply(reference::ReferenceConfig::KEYS, &["cost"], |k, v| {
            config.set(k, v)
        })?;
        if let Some(raw) = options.get("cost") {
            config.cost = Some(cost_option(&raw, env)?);
        }
        options.finish()?;
        config
            .validate()
            .map_err(|e| SpecError::Decode(decoding_core::DecodeError::from(e)))?;
        Ok(Self { config })
    }
}

/// The `cost` option: `auto` (the environment's measured curve) or a curve written
/// `k:cost/k:cost/...`.
fn cost_option(raw: &str, env: &SpecEnv<'_>) -> Result<CostCurve, SpecError> {
    let bad = |message: String| SpecError::BadValue {
        key: "cost".to_string(),
        message,
    };
    if raw == "auto" {
        return env.cost_curve.cloned().ok_or_else(|| {
            bad("`auto` needs a measured cost curve (the eval runner's --measure-cost)".into())
        });
    }
    raw.parse()
        .map_err(|e: decoding_core::DecodeError| bad(e.to_string()))
}

impl StrategyFactory for ReferenceFactory {
    fn describe(&self) -> String {
        format!("reference:{}", self.config)
    }

    fn build(&self, case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        let index = std::sync::Arc::new(reference::ReferenceIndex::new(case.references));
        let strategy = reference::ReferenceStrategy::new(self.config.clone(), index)
            .map_err(|e| SpecError::Decode(e.into()))?;
        Ok(Box::new(strategy))
    }
}

/// `medusa[:tree=dynamic[:N]|mc_sim_7b_63|sparse:N|cartesian:K1xK2x...,context=on|off|SEEN:UNSEEN,accept=greedy|typical,epsilon=E,delta=D,min_score=S,cost=CURVE,weights=exact|bf16,heads=FILE|engine:N,acc=FILE]`:
/// Medusa heads (default `MODEL_DIR/medusa_heads.safetensors`, loaded once and shared by
/// every case) run by the library on the model's hidden states. `tree` (default `dynamic`):
/// `dynamic` picks each step's tree from the heads' probabilities, up to `N` nodes or the
/// decoder's budget, leaving out paths estimated below `min_score`, and with
/// `cost=1:1/2:1.2/4:1.6/...` (forward cost by tree size) keeping each step the nodes that
/// maximise expected tokens per unit of cost; dynamic trees re-weight the heads' candidates
/// by the context prior (`context`, default `on` = factors 3 and 0.6; `off` for the heads
/// alone); `mc_sim_7b_63` is the
/// paper's 64-node tree; `sparse:N` the paper's sparse tree of `N` nodes (root included) from
/// rank accuracies (`acc`, default `MODEL_DIR/medusa_topk_acc_heldout.json`); `cartesian:3x2`
/// the product of each head's top candidates. `accept=greedy` is exact verification (also
/// lossless under sampling); `accept=typical` is the paper's typical acceptance, LOSSY under
/// sampling (`epsilon` = 0.09, `delta` = 0.3). `weights=exact` (default) keeps the heads'
/// weights as the file has them (f16 stays f16), `weights=bf16` stores the output
/// projections in bfloat16 (faster to evaluate from f32 files; drafts only). `heads=engine:N`
/// takes `N` heads' logits from the model itself ([`decoding_core::HeadLogits`]) instead of
/// a weights file.
struct MedusaFactory {
    source: medusa::HeadSource,
    config: medusa::MedusaConfig,
    description: String,
}

impl MedusaFactory {
    fn parse(mut options: SpecOptions, env: &SpecEnv<'_>) -> Result<Self, SpecError> {
        let bad = |key: &str, message: String| SpecError::BadValue {
            key: key.to_string(),
            message,
        };
        let in_model_dir = |file: &str| env.model_dir.map(|d| d.join(file));
        let tree = options.get("tree").unwrap_or_else(|| "dynamic".to_string());
        let accept = options
            .get("accept")
            .unwrap_or_else(|| "greedy".to_string());
        let epsilon: Option<f64> = parse_optional(&mut options, "epsilon")?;
        let delta: Option<f64> = parse_optional(&mut options, "delta")?;
        let min_score: Option<f32> = parse_optional(&mut options, "min_score")?;
        let cost = options
            .get("cost")
            .map(|raw| cost_option(&raw, env))
            .transpose()?;
        let context = options.get("context");
        let bf16 = match options.get("weights").as_deref() {
            None | Some("exact" | "f32") => false,
            Some("bf16") => true,
            Some(other) => {
                return Err(bad("weights", format!("`{other}`: expected exact or bf16")));
            }
        };
        let heads = options.get("heads");
        let acc_path = options
            .get("acc")
            .map(std::path::PathBuf::from)
            .or_else(|| in_model_dir("medusa_topk_acc_heldout.json"));
        options.finish()?;
        let engine_heads = match heads.as_deref().map(|h| h.split_once(':')) {
            Some(Some(("engine", n))) => Some(n.parse::<usize>().map_err(|e| {
                bad(
                    "heads",
                    format!("`engine:{n}`: expected engine:NUM_HEADS: {e}"),
                )
            })?),
            _ => None,
        };
        let source = match engine_heads {
            Some(num_heads) => {
                if bf16 {
                    return Err(bad(
                        "weights",
                        "engine heads hold their own weights".to_string(),
                    ));
                }
                medusa::HeadSource::Engine { num_heads }
            }
            None => {
                let heads_path = heads
                    .map(std::path::PathBuf::from)
                    .or_else(|| in_model_dir("medusa_heads.safetensors"))
                    .ok_or_else(|| SpecError::Unavailable("medusa needs a model directory holding medusa_heads.safetensors, heads=FILE or heads=engine:N".to_string()))?;
                let heads = medusa::MedusaHeads::load(&heads_path).map_err(|e| {
                    SpecError::Unavailable(format!("{}: {e}", heads_path.display()))
                })?;
                if heads.vocab_size() != env.vocab_size {
                    return Err(SpecError::Unavailable(format!(
                        "{}: the heads predict {} tokens, the model has {}",
                        heads_path.display(),
                        heads.vocab_size(),
                        env.vocab_size
                    )));
                }
                medusa::HeadSource::Library(std::sync::Arc::new(if bf16 {
                    heads.with_bf16_outputs()
                } else {
                    heads
                }))
            }
        };
        let (policy, mut description) = medusa_tree(
            &tree,
            min_score,
            cost,
            context.as_deref(),
            acc_path.as_deref(),
        )?;
        let acceptance = match accept.as_str() {
            "greedy" | "exact" => {
                if epsilon.is_some() || delta.is_some() {
                    return Err(bad(
                        "epsilon/delta",
                        "only apply to accept=typical".to_string(),
                    ));
                }
                description += ",accept=greedy";
                medusa::Acceptance::Exact
            }
            "typical" => {
                let typical =
                    medusa::TypicalAcceptance::new(epsilon.unwrap_or(0.09), delta.unwrap_or(0.3))
                        .map_err(|e| bad("epsilon/delta", e.to_string()))?;
                description += &format!(
                    ",accept=typical,epsilon={},delta={}",
                    typical.epsilon(),
                    typical.delta()
                );
                medusa::Acceptance::TypicalLossy(typical)
            }
            other => {
                return Err(bad(
                    "accept",
                    format!("`{other}`: expected greedy or typical"),
                ));
            }
        };
        let config = medusa::MedusaConfig::new(policy).with_acceptance(acceptance);
        if bf16 {
            description += ",weights=bf16";
        }
        if let Some(n) = engine_heads {
            description += &format!(",heads=engine:{n}");
        }
        medusa::Medusa::new(source.clone(), config.clone())
            .map_err(|e| bad("tree", e.to_string()))?;
        Ok(Self {
            source,
            config,
            description: format!("medusa:tree={description}"),
        })
    }
}

/// `key` parsed as `T`, if given.
fn parse_optional<T: std::str::FromStr>(
    options: &mut SpecOptions,
    key: &'static str,
) -> Result<Option<T>, SpecError>
where
    T::Err: std::fmt::Display,
{
    options
        .get(key)
        .map(|raw| {
            raw.parse().map_err(|e: T::Err| SpecError::BadValue {
                key: key.to_string(),
                message: format!("`{raw}`: {e}"),
            })
        })
        .transpose()
}

/// The `context` option of `medusa`: `off`, `on` (the default factors) or `SEEN:UNSEEN`, each
/// a `/`-separated list of per-head factors (`3:0.6`, `1.9/2.9/4.1/5:0.68/0.61/0.58/0.56`).
fn parse_context_prior(text: &str) -> Result<Option<medusa::ContextPrior>, SpecError> {
    let bad = |message: String| SpecError::BadValue {
        key: "context".to_string(),
        message,
    };
    let list = |part: &str| {
        part.split('/')
            .map(|x| x.trim().parse::<f32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("`{text}`: {e}")))
    };
    match text {
        "off" => Ok(None),
        "on" => Ok(Some(medusa::ContextPrior::default())),
        _ => {
            let (seen, unseen) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("`{text}`: expected off, on or SEEN:UNSEEN")))?;
            medusa::ContextPrior::new(list(seen)?, list(unseen)?)
                .map(Some)
                .map_err(|e| bad(e.to_string()))
        }
    }
}

/// Parses the `tree` option of `medusa`; returns the policy and its normalised description.
fn medusa_tree(
    tree: &str,
    min_score: Option<f32>,
    cost: Option<CostCurve>,
    context: Option<&str>,
    acc_path: Option<&Path>,
) -> Result<(medusa::TreePolicy, String), SpecError> {
    let bad = |message: String| SpecError::BadValue {
        key: "tree".to_string(),
        message,
    };
    let (kind, arg) = tree.split_once(':').unwrap_or((tree, ""));
    let number = |what: &str| {
        arg.parse::<usize>()
            .map_err(|e| bad(format!("`{tree}`: {what} needs a node count: {e}")))
    };
    if kind != "dynamic" && (min_score.is_some() || cost.is_some() || context.is_some()) {
        return Err(SpecError::BadValue {
            key: "min_score/cost/context".to_string(),
            message: "only apply to tree=dynamic".to_string(),
        });
    }
    let policy = match kind {
        "dynamic" => {
            let mut d = medusa::DynamicTree::new();
            if !arg.is_empty() {
                d = d
                    .with_max_nodes(number("dynamic")?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if let Some(s) = min_score {
                d = d.with_min_score(s).map_err(|e| bad(e.to_string()))?;
            }
            let mut text = match d.max_nodes() {
                Some(n) => format!("dynamic:{n}"),
                None => "dynamic".to_string(),
            };
            if d.min_score() > 0.0 {
                text += &format!(",min_score={}", d.min_score());
            }
            if let Some(curve) = cost {
                text += &format!(",cost={curve}");
                d = d.with_cost(curve);
            }
            match parse_context_prior(context.unwrap_or("on"))? {
                Some(prior) => {
                    let (seen, unseen) = prior.factors();
                    let list = |f: &[f32]| {
                        f.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join("/")
                    };
                    text += &format!(",context={}:{}", list(seen), list(unseen));
                    d = d.with_context_prior(prior);
                }
                None => text += ",context=off",
            }
            return Ok((medusa::TreePolicy::Dynamic(d), text));
        }
        "mc_sim_7b_63" if arg.is_empty() => medusa::CandidateTree::mc_sim_7b_63(),
        "sparse" => {
            let path = acc_path.ok_or_else(|| {
                SpecError::Unavailable(
                    "tree=sparse needs rank accuracies: acc=FILE or a model directory".to_string(),
                )
            })?;
            let acc = medusa::RankAccuracies::load(path)
                .map_err(|e| SpecError::Unavailable(format!("{}: {e}", path.display())))?;
            medusa::CandidateTree::sparse(&acc, number("sparse")?)
                .map_err(|e| bad(e.to_string()))?
        }
        "cartesian" => {
            let widths = arg
                .split('x')
                .map(str::parse::<usize>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("`{tree}`: expected cartesian:K1xK2x...: {e}")))?;
            medusa::CandidateTree::cartesian(&widths).map_err(|e| bad(e.to_string()))?
        }
        _ => {
            return Err(bad(format!(
                "`{tree}`: expected dynamic[:N], mc_sim_7b_63, sparse:N or cartesian:K1xK2x..."
            )));
        }
    };
    Ok((medusa::TreePolicy::Static(policy), tree.to_string()))
}

impl StrategyFactory for MedusaFactory {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn build(&self, _case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        let strategy = medusa::Medusa::new(self.source.clone(), self.config.clone())
            .map_err(|e| SpecError::Decode(e.into()))?;
        Ok(Box::new(strategy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_parsed_and_unknown_keys_reported() {
        let (name, mut o) = SpecOptions::split("medusa:tree=sparse:64, accept=greedy").unwrap();
        assert_eq!(name, "medusa");
        assert_eq!(o.get("tree").as_deref(), Some("sparse:64"));
        assert!(o.clone().finish().is_err());
        assert_eq!(o.get("accept").as_deref(), Some("greedy"));
        assert!(o.finish().is_ok());
        let (_, mut o) = SpecOptions::split("jacobi:k=x").unwrap();
        assert!(o.parse_or("k", 4usize).is_err());
        assert!(SpecOptions::split("a:k").is_err());
        assert!(SpecOptions::split("a:k=1,k=2").is_err());
        let env = SpecEnv::new(8);
        assert!(parse("nope", &env).is_err());
        assert!(parse("greedy:x=1", &env).is_err());
        assert!(parse("greedy", &env).is_ok());
    }

    #[test]
    fn medusa_specs() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/pycoder-16m"));
        let no_dir = SpecEnv::new(8192);
        assert!(matches!(
            parse("medusa", &no_dir),
            Err(SpecError::Unavailable(_))
        ));
        assert!(parse("medusa:heads=engine:4", &no_dir).is_ok());
        if !dir.join("medusa_heads.safetensors").exists() {
            return;
        }
        let env = SpecEnv::new(8192).with_model_dir(dir);
        let describe = |spec: &str| parse(spec, &env).map(|f| f.describe());
        assert_eq!(
            describe("medusa").unwrap(),
            "medusa:tree=dynamic,context=3:0.6,accept=greedy"
        );
        for ok in [
            "medusa:tree=mc_sim_7b_63",
            "medusa:tree=sparse:64",
            "medusa:tree=cartesian:4x3x3",
            "medusa:tree=dynamic:16,context=off,min_score=0.1",
            "medusa:tree=dynamic,cost=1:1/8:2.7/64:14.5,context=2/3:0.5",
            "medusa:accept=typical,epsilon=0.2",
            "medusa:weights=bf16",
            "medusa:heads=engine:3",
        ] {
            assert!(describe(ok).is_ok(), "{ok}");
        }
        for bad in [
            "medusa:tree=cartesian:2x2x2x2x2",
            "medusa:tree=bogus",
            "medusa:tree=sparse",
            "medusa:epsilon=0.2",
            "medusa:tree=mc_sim_7b_63,context=off",
            "medusa:context=maybe",
            "medusa:accept=sometimes",
            "medusa:weights=int4",
            "medusa:heads=engine:x",
            "medusa:heads=engine:2,weights=bf16",
        ] {
            assert!(describe(bad).is_err(), "{bad}");
        }
        let wrong_vocab = SpecEnv::new(100).with_model_dir(dir);
        assert!(parse("medusa", &wrong_vocab).is_err());
    }

    /// `spec` is refused with a bad value of option `key`.
    fn assert_names_key(spec: &str, key: &str, env: &SpecEnv<'_>) {
        match parse(spec, env) {
            Err(SpecError::BadValue { key: named, .. }) => assert_eq!(named, key, "{spec}"),
            other => panic!("{spec}: {:?}", other.map(|f| f.describe())),
        }
    }

    #[test]
    fn jacobi_specs() {
        let env = SpecEnv::new(64);
        let describe = |spec: &str| parse(spec, &env).map(|f| f.describe());
        assert_eq!(describe("jacobi").unwrap(), "jacobi:k=8,init=prompt:0");
        let given = describe("jacobi:init=pad:3,k=4").unwrap();
        assert_eq!(given, "jacobi:k=4,init=pad:3");
        assert_eq!(describe(&given).unwrap(), given);
        for (bad, key) in [
            ("jacobi:k=0", "k"),
            ("jacobi:k=x", "k"),
            ("jacobi:init=random", "init"),
        ] {
            assert_names_key(bad, key, &env);
        }
        assert!(parse("jacobi:window=3", &env).is_err());
    }

    #[test]
    fn lookahead_specs() {
        let env = SpecEnv::new(64);
        let describe = |spec: &str| parse(spec, &env).map(|f| f.describe());
        assert_eq!(
            describe("lookahead").unwrap(),
            "lookahead:w=15,n=5,g=15,pool=none,output=true,ext=16,init=prompt:0,logits=top,fill=pool"
        );
        let given = describe("lookahead:w=7,g=7,pool=prompt,logits=all,fill=init,ext=0").unwrap();
        assert_eq!(
            given,
            "lookahead:w=7,n=5,g=7,pool=prompt,output=true,ext=0,init=prompt:0,logits=all,fill=init"
        );
        assert_eq!(describe(&given).unwrap(), given);
        for (bad, key) in [
            ("lookahead:w=0", "w"),
            ("lookahead:n=1", "n"),
            ("lookahead:w=100000000", "w"),
            ("lookahead:pool=all", "pool"),
            ("lookahead:fill=x", "fill"),
        ] {
            assert_names_key(bad, key, &env);
        }
        assert!(parse("lookahead:depth=3", &env).is_err());
    }

    #[test]
    fn reference_specs() {
        let env = SpecEnv::new(64);
        let describe = |spec: &str| parse(spec, &env).map(|f| f.describe());
        assert_eq!(
            describe("reference").unwrap(),
            "reference:mode=suffix,k=32,n=1,nodes=24,tree=true,min_prob=0.1,alpha=3,occ=64,\
             weight=2,periodic=true,refs=true,context=true"
        );
        let pld = describe("reference:n=5,mode=pld").unwrap();
        assert_eq!(
            pld,
            "reference:mode=pld,k=10,n=5,periodic=false,refs=false,context=true"
        );
        let costed = describe("reference:k=8,cost=1:1/2:1.2/8:2").unwrap();
        assert!(costed.ends_with(",cost=1:1/2:1.2/8:2"), "{costed}");
        for given in [pld, costed] {
            assert_eq!(describe(&given).unwrap(), given);
        }
        for (bad, key) in [("reference:k=x", "k"), ("reference:mode=all", "mode")] {
            assert_names_key(bad, key, &env);
        }
        assert!(matches!(
            parse("reference:min_prob=2", &env),
            Err(SpecError::Decode(_))
        ));
        assert!(parse("reference:depth=3", &env).is_err());
    }

    #[test]
    fn draft_specs() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/pycoder-16m"));
        assert!(matches!(
            parse("draft", &SpecEnv::new(8192)),
            Err(SpecError::Unavailable(_))
        ));
        if !dir.join("model.safetensors").exists() {
            return;
        }
        let model = llama_cpu::Llama::load(dir).unwrap();
        let env = SpecEnv::new(8192).with_model(&model);
        let describe = |spec: &str| parse(spec, &env).map(|f| f.describe());
        let chain = describe("draft").unwrap();
        assert_eq!(
            chain,
            format!("draft:layers={DRAFT_LAYERS},mode=chain,k=4,width=1,nodes=64,min_prob=0")
        );
        assert_eq!(describe(&chain).unwrap(), chain);
        let tree = describe("draft:mode=tree,layers=3,k=6").unwrap();
        assert_eq!(
            tree,
            "draft:layers=3,mode=tree,k=6,width=4,nodes=24,min_prob=0"
        );
        let costed = describe("draft:cost=1:1/2:1.5/8:3.5,dcost=0.25").unwrap();
        assert!(
            costed.ends_with(",cost=1:1/2:1.5/8:3.5,dcost=0.25"),
            "{costed}"
        );
        assert_eq!(describe(&costed).unwrap(), costed);
        for bad in [
            "draft:layers=0",
            "draft:layers=9",
            "draft:mode=bush",
            "draft:k=0",
            "draft:width=3",
            "draft:dcost=0.3",
            "draft:cost=auto",
            "draft:depth=2",
        ] {
            assert!(describe(bad).is_err(), "{bad}");
        }
        let composite = describe("composite:sources=reference+draft:layers=1;k=2").unwrap();
        assert!(
            composite.contains("+draft:layers=1;mode=chain;k=2;"),
            "{composite}"
        );
        let strategy = parse("draft:mode=tree", &env)
            .unwrap()
            .build(&CaseInputs {
                prompt: &[1, 2, 3],
                references: &[],
            })
            .unwrap();
        assert_eq!(strategy.name(), "draft");
    }

    #[test]
    fn composite_specs() {
        let curve = CostCurve::new(vec![(1, 1.0), (2, 1.5), (8, 3.5)]).unwrap();
        let env = SpecEnv::new(8192);
        let measured = env.with_cost_curve(&curve);
        let describe = |spec: &str, env: &SpecEnv<'_>| parse(spec, env).map(|f| f.describe());
        let plain = describe("composite", &env).unwrap();
        assert!(
            plain.starts_with("composite:sources=reference:mode=suffix;"),
            "{plain}"
        );
        assert!(plain.contains("+lookahead:w=5;n=3;g=5;"), "{plain}");
        assert!(plain.ends_with(",budget=fixed"), "{plain}");
        // The normalised description parses back to itself.
        assert_eq!(describe(&plain, &env).unwrap(), plain);
        // With a measured curve, plain composite sizes trees by it.
        let costed = describe("composite", &measured).unwrap();
        assert!(
            costed.ends_with(",budget=cost,cost=1:1/2:1.5/8:3.5"),
            "{costed}"
        );
        assert!(
            describe("composite:budget=fixed", &measured)
                .unwrap()
                .ends_with("budget=fixed")
        );
        let given = describe("composite:sources=jacobi:k=4+reference,cost=1:2/4:4", &env).unwrap();
        assert!(
            given.starts_with("composite:sources=jacobi:k=4;"),
            "{given}"
        );
        assert!(given.ends_with(",budget=cost,cost=1:1/4:2"), "{given}");
        let strategy = parse("composite:sources=jacobi:k=3+reference", &env)
            .unwrap()
            .build(&CaseInputs {
                prompt: &[1, 2, 3],
                references: &[],
            })
            .unwrap();
        assert_eq!(strategy.name(), "composite");
        for bad in [
            "composite:budget=cost",
            "composite:cost=auto",
            "composite:budget=fixed,cost=1:1/2:2",
            "composite:budget=sometimes",
            "composite:sources=composite",
            "composite:sources=reference+nope",
            "composite:sources=lookahead:w=0",
            "composite:sources=",
            "composite:x=1",
        ] {
            assert!(describe(bad, &env).is_err(), "{bad}");
        }
        assert!(describe("composite:cost=auto", &measured).is_ok());
        assert!(describe("reference:cost=auto", &env).is_err());
        assert!(describe("reference:cost=auto", &measured).is_ok());
    }
}
