//! The drafter's likeliest next tokens and their probabilities, from one logits row.

use decoding_core::{DecodeError, InvalidLogits, Token};

/// Logits this far below the maximum are left out of the softmax sum: each weighs under
/// `e^-20 = 2e-9` of the top token, so even 100k of them move a probability by under 0.02%.
/// The probabilities are drafting scores, never part of verification.
const NEGLIGIBLE: f32 = 20.0;

/// Writes into `out` the `n` tokens of `row` with the largest logits, largest first (ties:
/// the lower id first, as greedy decoding breaks them), each with its probability under the
/// softmax of the row (temperature 1); none if every logit is `-inf`. A NaN is an error
/// (`row_index` names the row).
pub(crate) fn top_tokens(
    row: &[f32],
    n: usize,
    row_index: usize,
    out: &mut Vec<(Token, f32)>,
) -> Result<(), DecodeError> {
    out.clear();
    if n == 0 {
        return Ok(());
    }
    // Kept sorted by descending logit; an equal logit goes after (its id is higher).
    let mut floor = f32::NEG_INFINITY;
    for (token, &x) in row.iter().enumerate() {
        if x.is_nan() {
            let reason = InvalidLogits::Nan {
                token: token as Token,
            };
            return Err(reason.at_row(row_index));
        }
        if out.len() < n || x > floor {
            let at = out.partition_point(|&(_, y)| y >= x);
            if out.len() == n {
                out.pop();
            }
            out.insert(at, (token as Token, x));
            floor = out[out.len() - 1].1;
        }
    }
    let max = out[0].1;
    if max == f32::NEG_INFINITY {
        out.clear();
        return Ok(());
    }
    let mut total = 0.0f64;
    for &x in row {
        if x > max - NEGLIGIBLE {
            total += f64::from((x - max).exp());
        }
    }
    for (_, x) in out.iter_mut() {
        *x = ((f64::from(*x - max)).exp() / total) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_first_ties_to_the_lower_id_with_softmax_probabilities() {
        let row = [1.0, 3.0, 2.0, 3.0, f32::NEG_INFINITY];
        let mut out = Vec::new();
        top_tokens(&row, 3, 0, &mut out).unwrap();
        let tokens: Vec<Token> = out.iter().map(|&(t, _)| t).collect();
        assert_eq!(tokens, vec![1, 3, 2]);
        let total: f32 = row.iter().map(|x| x.exp()).sum();
        assert!((out[0].1 - 3.0f32.exp() / total).abs() < 1e-6);
        assert!((out[2].1 - 2.0f32.exp() / total).abs() < 1e-6);
        top_tokens(&row, 9, 0, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[4], (4, 0.0));
    }

    #[test]
    fn nan_is_an_error_and_no_distribution_no_token() {
        let mut out = Vec::new();
        let err = top_tokens(&[0.0, f32::NAN], 2, 7, &mut out).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidLogits { row: 7, .. }),
            "{err}"
        );
        top_tokens(&[f32::NEG_INFINITY; 3], 2, 0, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
