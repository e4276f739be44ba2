//! The model's forward cost by tree size, measured for `cost=auto` and plain `composite`.

use std::time::{Duration, Instant};

use decoding_core::{CostCurve, LogitsModel};

use super::cpu;

/// Calls `run` at least five times and for at least a second; returns the best wall-clock
/// milliseconds of one call and the mean CPU milliseconds (all threads) per call.
pub(crate) fn time_calls<E>(mut run: impl FnMut() -> Result<(), E>) -> Result<(f64, f64), E> {
    let (mut best, mut runs) = (f64::INFINITY, 0u32);
    let (cpu_start, started) = (cpu::process_cpu_time(), Instant::now());
    while runs < 5 || started.elapsed() < Duration::from_secs(1) {
        let one = Instant::now();
        run()?;
        best = best.min(one.elapsed().as_secs_f64() * 1e3);
        runs += 1;
    }
    let cpu = cpu_start
        .zip(cpu::process_cpu_time())
        .map_or(f64::NAN, |(a, b)| {
            (b - a).as_secs_f64() * 1e3 / f64::from(runs)
        });
    Ok((best, cpu))
}

/// The model's forward cost for chains of 1 to 64 nodes over a 512-token context (the
/// first prompt, repeated): the median of several runs per size.
pub(crate) fn measure(
    model: &mut dyn LogitsModel,
    prompt: &[u32],
) -> Result<CostCurve, Box<dyn std::error::Error>> {
    let context: Vec<u32> = prompt.iter().copied().cycle().take(512).collect();
    let sizes = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
    Ok(CostCurve::measure(model, &context, &sizes, 15)?)
}
