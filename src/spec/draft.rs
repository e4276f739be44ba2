//! The `draft` arm: speculative decoding with the model's own first layers as the drafter.

use draft::{DraftConfig, DraftStrategy};
use llama_cpu::Llama;

use super::{CaseInputs, SpecEnv, SpecError, SpecOptions, StrategyFactory, cost_option};

/// Layers of the early exit when `layers` is not given: on pycoder-16m (8 layers) the
/// shallowest exit that agrees with the model more than a quarter of the time (its greedy
/// token is the model's at 60% of positions after 4 layers, 25% after 3).
pub const DRAFT_LAYERS: usize = 4;

/// `draft[:layers=L,mode=chain|tree,k=K,width=W,nodes=N,min_prob=P,cost=auto|CURVE,dcost=auto|F]`:
/// speculative decoding (the `draft` crate) with the model's first `layers` blocks, its final
/// norm and its output projection as the drafter (self-speculation; default
/// [`DRAFT_LAYERS`]), sharing the model's weights. The other options are
/// [`DraftConfig`]'s: `mode` picks the preset (`chain`: `k` = 4 greedy drafter steps;
/// `tree`: EAGLE-2's dynamic tree of depth `k` = 5, `width` = 4, `nodes` = 24) that the others
/// adjust. `cost` (the target's forward cost by tree size, `auto` for the measured one)
/// sizes each step by cost; `dcost` is a drafter forward's cost relative to the target's
/// (`auto`, the default with `cost`: measured now, over a 512-token context).
pub(super) struct DraftFactory {
    drafter: Llama,
    config: DraftConfig,
}

impl DraftFactory {
    pub(super) fn parse(mut options: SpecOptions, env: &SpecEnv<'_>) -> Result<Self, SpecError> {
        let bad = |key: &str, message: String| SpecError::BadValue {
            key: key.to_string(),
            message,
        };
        let layers = options.parse_or("layers", DRAFT_LAYERS)?;
        let mut config = DraftConfig::chain();
        options.apply(DraftConfig::KEYS, &["cost", "dcost"], |k, v| {
            config.set(k, v)
        })?;
        let cost = options
            .get("cost")
            .map(|raw| cost_option(&raw, env))
            .transpose()?;
        let dcost = options.get("dcost");
        options.finish()?;
        let target = match (env.model, env.model_dir) {
            (Some(model), _) => model.clone(),
            (None, Some(dir)) => Llama::load(dir)
                .map_err(|e| SpecError::Unavailable(format!("{}: {e}", dir.display())))?,
            (None, None) => {
                return Err(SpecError::Unavailable(
                    "draft needs the model (or its directory) to draft with its layers".into(),
                ));
            }
        };
        let mut drafter = target
            .early_exit(layers)
            .map_err(|e| bad("layers", e.to_string()))?;
        match (cost, dcost.as_deref()) {
            (None, None) => {}
            (None, Some(_)) => return Err(bad("dcost", "only applies with cost".to_string())),
            (Some(curve), None | Some("auto")) => {
                let context: Vec<u32> = (0..512).map(|i| (i % 256) as u32).collect();
                let ratio = draft::relative_cost(
                    &mut target.clone(),
                    &mut drafter,
                    &context,
                    &[1, 2, 4, 8],
                    9,
                )?;
                config = config.with_cost(curve, (ratio * 1000.0).round() / 1000.0);
            }
            (Some(curve), Some(raw)) => {
                let ratio = raw
                    .parse()
                    .map_err(|e| bad("dcost", format!("`{raw}`: {e}")))?;
                config = config.with_cost(curve, ratio);
            }
        }
        config
            .validate()
            .map_err(decoding_core::DecodeError::from)?;
        DraftStrategy::new(drafter.clone(), config.clone())
            .map_err(decoding_core::DecodeError::from)?;
        Ok(Self { drafter, config })
    }
}

impl StrategyFactory for DraftFactory {
    fn describe(&self) -> String {
        format!("draft:layers={},{}", self.drafter.layers(), self.config)
    }

    fn build(&self, _case: &CaseInputs<'_>) -> Result<Box<dyn decoding_core::Strategy>, SpecError> {
        let strategy = DraftStrategy::new(self.drafter.clone(), self.config.clone())
            .map_err(decoding_core::DecodeError::from)?;
        Ok(Box::new(strategy))
    }
}
