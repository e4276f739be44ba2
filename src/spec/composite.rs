//! The `composite` arm: several techniques drafting into one tree.

use decoding_core::{Composite, CostCurve, NodeBudget, Strategy};

use super::{CaseInputs, SpecEnv, SpecError, SpecOptions, StrategyFactory, cost_option};

/// `composite[:sources=S1+S2+...,budget=fixed|cost,cost=auto|CURVE]`: the sources' drafts
/// merged into one deduplicated tree per step (decoding-core's [`Composite`]). Each source is
/// a specification of its own, with `;` instead of `,` between its options
/// (`sources=reference+medusa:tree=dynamic;context=off+lookahead:w=5;n=3;g=5`).
///
/// `budget=fixed` fills the decoder's node budget every step; `budget=cost` sizes each step's
/// tree to maximise expected tokens per unit of forward time on the cost curve (`cost=CURVE`,
/// or `cost=auto` for the curve the caller measured). Plain `composite` picks the default for
/// the model given: `budget=cost` when a measured curve is at hand, and the sources
/// [`COMPOSITE_SOURCES_WITH_HEADS`](super::COMPOSITE_SOURCES_WITH_HEADS) when the model
/// directory holds Medusa heads, otherwise [`COMPOSITE_SOURCES`](super::COMPOSITE_SOURCES)
/// (fixed budget) or [`COMPOSITE_SOURCES_COST_AWARE`](super::COMPOSITE_SOURCES_COST_AWARE).
pub(super) struct CompositeFactory {
    sources: Vec<Box<dyn StrategyFactory>>,
    budget: Option<CostCurve>,
}

/// Default sources for a model without Medusa heads.
pub const COMPOSITE_SOURCES: &str = "reference+lookahead:w=5;n=3;g=5";

/// Default sources for a model without Medusa heads under a cost-aware budget: lookahead's
/// window cannot be cut, so it would be paid for in full every step.
pub const COMPOSITE_SOURCES_COST_AWARE: &str = "reference";

/// Default sources for a model whose directory holds Medusa heads.
pub const COMPOSITE_SOURCES_WITH_HEADS: &str = "reference+medusa";

impl CompositeFactory {
    pub(super) fn parse(mut options: SpecOptions, env: &SpecEnv<'_>) -> Result<Self, SpecError> {
        let bad = |key: &str, message: String| SpecError::BadValue {
            key: key.to_string(),
            message,
        };
        let has_heads = env
            .model_dir
            .is_some_and(|dir| dir.join("medusa_heads.safetensors").exists());
        let sources = options.get("sources");
        let budget = options.get("budget");
        let cost = options.get("cost");
        options.finish()?;
        let curve = cost
            .as_deref()
            .map(|raw| cost_option(raw, env))
            .transpose()?;
        let budget = match budget.as_deref() {
            Some("fixed") if curve.is_some() => {
                return Err(bad("cost", "only applies to budget=cost".to_string()));
            }
            Some("fixed") => None,
            Some("cost") => Some(curve.or_else(|| env.cost_curve.cloned()).ok_or_else(|| {
                bad(
                    "budget",
                    "budget=cost needs cost=CURVE or a measured curve (cost=auto)".to_string(),
                )
            })?),
            None => curve.or_else(|| env.cost_curve.cloned()),
            Some(other) => {
                return Err(bad("budget", format!("`{other}`: expected fixed or cost")));
            }
        };
        let sources = sources.unwrap_or_else(|| {
            let default = match (has_heads, &budget) {
                (true, _) => COMPOSITE_SOURCES_WITH_HEADS,
                (false, None) => COMPOSITE_SOURCES,
                (false, Some(_)) => COMPOSITE_SOURCES_COST_AWARE,
            };
            default.to_string()
        });
        let sources = sources
            .split('+')
            .map(|source| {
                let source = source.trim().replace(';', ",");
                if source.split(':').next() == Some("composite") {
                    return Err(bad("sources", "a composite cannot nest".to_string()));
                }
                super::parse(&source, env)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sources.len() > decoding_core::SourceId::MAX {
            return Err(bad(
                "sources",
                format!("at most {} sources", decoding_core::SourceId::MAX),
            ));
        }
        Ok(Self { sources, budget })
    }
}

impl StrategyFactory for CompositeFactory {
    fn describe(&self) -> String {
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|s| s.describe().replace(',', ";"))
            .collect();
        let budget = match &self.budget {
            None => "budget=fixed".to_string(),
            Some(curve) => format!("budget=cost,cost={curve}"),
        };
        format!("composite:sources={},{budget}", sources.join("+"))
    }

    fn build(&self, case: &CaseInputs<'_>) -> Result<Box<dyn Strategy>, SpecError> {
        let sources = self
            .sources
            .iter()
            .map(|factory| factory.build(case))
            .collect::<Result<Vec<_>, _>>()?;
        let budget = match &self.budget {
            None => NodeBudget::Fixed,
            Some(curve) => NodeBudget::CostAware(curve.clone()),
        };
        Ok(Box::new(Composite::new(sources, budget)?))
    }
}
