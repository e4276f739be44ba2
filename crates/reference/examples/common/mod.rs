//! Shared by the examples: reference configurations from `key=value` lists, eval JSON.

use std::collections::BTreeMap;
use std::error::Error;

use decoding_core::CostCurve;
use decoding_core::Token;
use reference::{Mode, ReferenceConfig};
use serde_json::Value;

/// Token ids of a JSON array.
pub(crate) fn ids(value: &Value) -> Vec<Token> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as Token)
                .collect()
        })
        .unwrap_or_default()
}

/// A configuration from `mode=...,key=value,...` (the keys are the config's field names;
/// `n` is `max_match` for prompt lookup and `min_match` otherwise).
pub(crate) fn parse_config(spec: &str) -> Result<ReferenceConfig, Box<dyn Error>> {
    let mut pairs: BTreeMap<&str, &str> = BTreeMap::new();
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or("expected key=value")?;
        pairs.insert(k, v);
    }
    let mode = match pairs.remove("mode").unwrap_or("suffix") {
        "suffix" => Mode::Suffix,
        "llma" => Mode::Llma,
        "pld" => Mode::PromptLookup,
        other => return Err(format!("unknown mode {other}").into()),
    };
    let mut c = ReferenceConfig::preset(mode);
    for (key, value) in pairs {
        let flag = || value == "1" || value == "true";
        match key {
            "k" => c.k = value.parse()?,
            "n" if mode == Mode::PromptLookup => c.max_match = value.parse()?,
            "n" => c.min_match = value.parse()?,
            "max_match" => c.max_match = value.parse()?,
            "max_nodes" => c.max_nodes = value.parse()?,
            "min_prob" => c.min_prob = value.parse()?,
            "depth_factor" => c.depth_factor = value.parse()?,
            "occurrences" => c.max_occurrences = value.parse()?,
            "length_weight" => c.length_weight = value.parse()?,
            "tree" => c.tree = flag(),
            "periodic" => c.periodic = flag(),
            "refs" => c.references = flag(),
            "context" => c.context = flag(),
            "cost" => c.cost = Some(curve(value)?),
            _ => return Err(format!("unknown option {key}").into()),
        }
    }
    Ok(c)
}

/// A cost curve: `llama` (llama-cpu on this machine, 2 threads), `torch` (the eval README's
/// PyTorch ratios), or `k:cost/k:cost/...`.
pub(crate) fn curve(spec: &str) -> Result<CostCurve, Box<dyn Error>> {
    let points: Vec<(usize, f64)> = match spec {
        "llama" => vec![
            (1, 1.0),
            (2, 1.25),
            (4, 1.7),
            (8, 2.64),
            (16, 7.48),
            (32, 14.25),
        ],
        "torch" => vec![(1, 1.0), (2, 1.47), (8, 1.81), (20, 2.19), (33, 2.74)],
        _ => spec
            .split('/')
            .map(|p| {
                let (k, c) = p.split_once(':').ok_or("expected k:cost")?;
                Ok((k.parse()?, c.parse()?))
            })
            .collect::<Result<_, Box<dyn Error>>>()?,
    };
    Ok(CostCurve::new(points)?)
}
