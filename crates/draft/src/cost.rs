//! What a drafter forward costs, relative to the target's, measured on the models at hand.

use decoding_core::{CostCurve, DecodeError, LogitsModel, Token};

/// The drafter's forward cost relative to the target's ([`DraftConfig::drafter_cost`]):
/// the mean, over chains of `sizes` nodes on top of `context`, of the ratio of their
/// [`CostCurve::measure`]d times (the median of `repeats` runs each). Both models are reset
/// before and after.
///
/// ```
/// use decoding_testkit::toy::{HashModel, WithCost};
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let mut target = WithCost::new(HashModel::new(16, 1), ms(4), ms(1));
/// let mut drafter = WithCost::new(HashModel::new(16, 2), ms(1), Duration::ZERO);
/// let ratio = draft::relative_cost(&mut target, &mut drafter, &[1, 2, 3], &[1, 4], 3).unwrap();
/// assert!(ratio > 0.0); // about 0.16, as timed on this machine
/// println!("the drafter costs {ratio:.2} of the target");
/// ```
///
/// [`DraftConfig::drafter_cost`]: crate::DraftConfig::drafter_cost
pub fn relative_cost(
    target: &mut dyn LogitsModel,
    drafter: &mut dyn LogitsModel,
    context: &[Token],
    sizes: &[usize],
    repeats: usize,
) -> Result<f64, DecodeError> {
    if sizes.is_empty() {
        return Err(DecodeError::config(
            "measuring a cost needs at least one size",
        ));
    }
    let of_target = CostCurve::measure(target, context, sizes, repeats)?;
    let of_drafter = CostCurve::measure(drafter, context, sizes, repeats)?;
    let total: f64 = sizes
        .iter()
        .map(|&n| of_drafter.cost(n) / of_target.cost(n))
        .sum();
    Ok(total / sizes.len() as f64)
}
