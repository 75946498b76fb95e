//! How fair a window of sharing was (`../shared/docs/DOMAIN.md`, Queues and fair
//! scheduling): each backlogged tenant's fair share is its weight over the sum of the
//! backlogged tenants' weights; fairness is Jain's index over the normalised shares
//! x_i = actual_i / fair_i, so 1.0 means every tenant got exactly its weighted share.

/// Jain's fairness index (sum x)^2 / (n * sum x^2), in (0, 1]; `None` without values.
pub fn jain_index(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|value| value * value).sum();
    if squares == 0.0 {
        return Some(1.0);
    }
    Some(sum * sum / (values.len() as f64 * squares))
}

/// Fair shares of backlogged tenants from their weights: w_i / sum(w).
pub fn fair_shares(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|weight| if total > 0.0 { weight / total } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn equal_normalised_shares_are_perfectly_fair() {
        assert_eq!(jain_index(&[1.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(jain_index(&[]), None);
        // One tenant got everything of three: 1/3.
        let index = jain_index(&[3.0, 0.0, 0.0]).unwrap();
        assert!((index - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            fair_shares(&[1.0, 2.0, 3.0]),
            vec![1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]
        );
    }

    proptest! {
        #[test]
        fn the_index_lies_between_one_over_n_and_one(values in proptest::collection::vec(0.0f64..10.0, 1..20)) {
            let index = jain_index(&values).unwrap();
            prop_assert!(index <= 1.0 + 1e-9);
            prop_assert!(index >= 1.0 / values.len() as f64 - 1e-9);
        }
    }
}
