//! The model's forward cost by tree size, measured for `cost=auto` and plain `composite`.

use decoding_core::CostCurve;
use llama_cpu::Llama;

/// The model's forward cost for chains of 1 to 64 nodes over a 512-token context (the
/// first prompt, repeated): the median of several runs per size.
pub(crate) fn measure(
    model: &mut Llama,
    prompt: &[u32],
) -> Result<CostCurve, Box<dyn std::error::Error>> {
    let context: Vec<u32> = prompt.iter().copied().cycle().take(512).collect();
    let sizes = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
    Ok(CostCurve::measure(model, &context, &sizes, 15)?)
}

/// `k:relative cost/...`, the form the `cost` option takes.
pub(crate) fn describe(curve: &CostCurve) -> String {
    let points: Vec<String> = curve
        .points()
        .iter()
        .map(|&(k, _)| format!("{k}:{:.2}", curve.relative(k)))
        .collect();
    points.join("/")
}
