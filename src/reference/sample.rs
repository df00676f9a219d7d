//! The sampler's distribution in f64, found by sorting: the independent check of the
//! kernel's thresholds, found there by radix selection without a sort.

use crate::dtype::{Element, widen};
use crate::error::Result;
use crate::ops::sample::{RowSettings, Sampler};
use crate::shape::Shape;

/// The distribution each row's draws follow under `sampler`'s temperature, top-k, top-p
/// and min-p (in that order, as [`Sampler`] documents): for each row of `logits` (shape
/// `shape`, the class axis anywhere; rows in [`Shape`]'s order), the filtered, renormalised probability of every class (0
/// outside the allowed set), or `None` for a row that holds a NaN or `+inf`, or no finite
/// logit (the kernel draws -1 there). Greedy (`temperature == 0`) puts all the mass on the
/// argmax, the lowest index on ties, and so does a temperature so small that the largest
/// logit over it overflows f32. `num_samples` and `seed` are not used.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) when `logits.len()` is not `rows * cols`,
/// [`Error::InvalidOption`](crate::Error::InvalidOption) for a bad option, [`Error::InvalidLayout`](crate::Error::InvalidLayout) for rows that are
/// not whole runs of `inner`.
pub fn sample_distribution<T: Element>(
    logits: &[T],
    shape: Shape,
    sampler: &Sampler,
) -> Result<Vec<Option<Vec<f64>>>> {
    sample_distribution_with_settings(logits, shape, sampler, &RowSettings::default())
}

/// As [`sample_distribution`], with the per-row settings `settings` in place of the
/// sampler's scalars (see [`RowSettings::for_row`]). A row whose own settings are out of
/// range (what [`Sampler::check_options`] refuses) has no distribution, `None`: the
/// kernel draws -1 there and counts the row in its status.
///
/// # Errors
///
/// As [`sample_distribution`], and [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) for a setting without one
/// value per row.
pub fn sample_distribution_with_settings<T: Element>(
    logits: &[T],
    shape: Shape,
    sampler: &Sampler,
    settings: &RowSettings,
) -> Result<Vec<Option<Vec<f64>>>> {
    sampler.check_options()?;
    shape.check_layout()?;
    shape.check_len("logits", logits.len())?;
    settings.check_rows(shape.rows)?;
    let values = widen(logits);
    Ok((0..shape.rows)
        .map(|row| {
            let own = settings.for_row(sampler, row);
            own.check_options().ok()?;
            let values: Vec<f64> = (0..shape.cols).map(|c| f64::from(values[shape.index(row, c)])).collect();
            row_distribution(&values, &own)
        })
        .collect())
}

fn row_distribution(logits: &[f64], sampler: &Sampler) -> Option<Vec<f64>> {
    if logits.iter().any(|&l| l.is_nan() || l == f64::INFINITY) || !logits.iter().any(|l| l.is_finite()) {
        return None;
    }
    let mut probabilities = vec![0.0; logits.len()];
    let largest = logits.iter().copied().filter(|l| l.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    // A temperature so small that the largest logit over it overflows f32 is greedy.
    #[allow(clippy::cast_possible_truncation)]
    let overflows = !((largest / f64::from(sampler.temperature)) as f32).is_finite();
    if sampler.temperature == 0.0 || overflows {
        let mut best = None::<usize>;
        for (i, &l) in logits.iter().enumerate() {
            if l.is_finite() && best.is_none_or(|b| l > logits[b]) {
                best = Some(i);
            }
        }
        probabilities[best?] = 1.0;
        return Some(probabilities);
    }
    let temperature = f64::from(sampler.temperature);
    let x: Vec<f64> = logits.iter().map(|&l| l / temperature).collect();
    // The finite tokens, most probable first (ties by index).
    let mut order: Vec<usize> = (0..x.len()).filter(|&i| x[i].is_finite()).collect();
    order.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
    let max = x[order[0]];
    let weight = |i: usize| (x[i] - max).exp();
    // Top-k: the k largest, and every token tied with the k-th.
    let k = sampler.top_k as usize;
    if k > 0 && k < order.len() {
        let bound = x[order[k - 1]];
        order.retain(|&i| x[i] >= bound);
    }
    // Top-p on the top-k-renormalised distribution: the smallest most-probable prefix
    // whose mass reaches p, the crossing token and its ties kept.
    if sampler.top_p < 1.0 {
        let total: f64 = order.iter().map(|&i| weight(i)).sum();
        let needed = f64::from(sampler.top_p) * total;
        let mut mass = 0.0;
        let mut bound = x[order[order.len() - 1]];
        for &i in &order {
            mass += weight(i);
            if mass >= needed {
                bound = x[i];
                break;
            }
        }
        order.retain(|&i| x[i] >= bound);
    }
    // Min-p: probability at least min_p times the largest.
    if sampler.min_p > 0.0 {
        let min_p = f64::from(sampler.min_p);
        order.retain(|&i| weight(i) >= min_p);
    }
    let total: f64 = order.iter().map(|&i| weight(i)).sum();
    for &i in &order {
        probabilities[i] = weight(i) / total;
    }
    Some(probabilities)
}

/// The sampler's masks in f64, from [`sample_distribution_with_settings`]: the filtered,
/// renormalised probabilities (NaN for a row without a distribution), and the masked
/// logits: each logit as given where its probability is positive, `-inf` elsewhere, NaN
/// for a row without a distribution; both in the logits' layout (`shape`).
///
/// # Errors
///
/// As [`sample_distribution_with_settings`].
pub fn sample_masks<T: Element>(
    logits: &[T],
    shape: Shape,
    sampler: &Sampler,
    settings: &RowSettings,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows = sample_distribution_with_settings(logits, shape, sampler, settings)?;
    let values = widen(logits);
    let (mut probs, mut masked) = (vec![f64::NAN; values.len()], vec![f64::NAN; values.len()]);
    for (row, distribution) in rows.iter().enumerate() {
        let Some(p) = distribution else { continue };
        for (c, &p) in p.iter().enumerate() {
            let at = shape.index(row, c);
            probs[at] = p;
            masked[at] = if p > 0.0 { f64::from(values[at]) } else { f64::NEG_INFINITY };
        }
    }
    Ok((probs, masked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_row(logits: &[f32], sampler: Sampler) -> Option<Vec<f64>> {
        sample_distribution(logits, Shape::new(1, logits.len()), &sampler).unwrap().pop().unwrap()
    }

    #[test]
    fn filters_keep_what_they_should() {
        let logits = [3.0_f32, 1.0, 2.0, 0.0, 2.0];
        let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - 3.0).exp()).collect();
        // Top-k 2 keeps 3.0 and both 2.0 (tied with the second).
        let p = one_row(&logits, Sampler { top_k: 2, ..Sampler::default() }).unwrap();
        let total = weights[0] + weights[2] + weights[4];
        assert!((p[0] - weights[0] / total).abs() < 1e-12 && p[1] == 0.0 && p[3] == 0.0);
        // Top-p just above the first token's mass keeps the crossing 2.0 and its tie.
        let all: f64 = weights.iter().sum();
        #[allow(clippy::cast_possible_truncation)]
        let top_p = (weights[0] / all + 1e-3) as f32;
        let p = one_row(&logits, Sampler { top_p, ..Sampler::default() }).unwrap();
        assert!(p[0] > 0.0 && p[2] > 0.0 && p[4] > 0.0 && p[1] == 0.0);
        // Min-p 0.3: exp(-1) = 0.37 kept, exp(-2) = 0.14 not.
        let p = one_row(&logits, Sampler { min_p: 0.3, ..Sampler::default() }).unwrap();
        assert!(p[2] > 0.0 && p[1] == 0.0);
        // Greedy: the first of the largest.
        let p = one_row(&[1.0, 4.0, 4.0], Sampler { temperature: 0.0, ..Sampler::default() }).unwrap();
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
        // Masks, a single finite token, NaN and nothing finite.
        let p = one_row(&[f32::NEG_INFINITY, 5.0, f32::NEG_INFINITY], Sampler::default()).unwrap();
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
        assert!(one_row(&[1.0, f32::NAN], Sampler::default()).is_none());
        assert!(one_row(&[1.0, f32::INFINITY], Sampler::default()).is_none());
        assert!(one_row(&[f32::NEG_INFINITY; 2], Sampler::default()).is_none());
    }

    #[test]
    fn a_strided_class_axis_reads_each_row_where_it_lies() {
        // (2, 4, 3) over dim 1: row o * 3 + j is logits[o][..][j].
        let logits: Vec<f32> = (0..24_u8).map(|v| f32::from(v % 7) * 0.5).collect();
        let strided = Shape::with_inner(2, 4, 3);
        let rows: Vec<f32> = (0..6)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .map(|(r, c)| logits[strided.index(r, c)])
            .collect();
        let sampler = Sampler { top_k: 2, ..Sampler::default() };
        let settings = RowSettings::default();
        let want = sample_distribution(&rows, Shape::new(6, 4), &sampler).unwrap();
        assert_eq!(sample_distribution(&logits, strided, &sampler).unwrap(), want);
        let (probs, masked) = sample_masks(&logits, strided, &sampler, &settings).unwrap();
        for (r, row) in want.iter().enumerate() {
            for (c, &p) in row.as_ref().unwrap().iter().enumerate() {
                let at = strided.index(r, c);
                assert_eq!(probs[at], p);
                assert_eq!(masked[at], if p > 0.0 { f64::from(logits[at]) } else { f64::NEG_INFINITY });
            }
        }
    }

    #[test]
    fn per_row_settings_replace_the_scalars() {
        let logits = [
            3.0_f32, 1.0, 2.0, 0.0, /* row 1 */ 3.0, 1.0, 2.0, 0.0, /* row 2 */ 1.0, 2.0, 0.0, 0.5,
        ];
        let shape = Shape::new(3, 4);
        let settings = RowSettings {
            temperature: Some(vec![0.0, 1.0, f32::NAN]),
            top_k: Some(vec![0, 2, 0]),
            ..RowSettings::default()
        };
        let rows = sample_distribution_with_settings(&logits, shape, &Sampler::default(), &settings).unwrap();
        assert_eq!(rows[0].as_ref().unwrap(), &vec![1.0, 0.0, 0.0, 0.0], "greedy row");
        let second = rows[1].as_ref().unwrap();
        assert!(second[0] > 0.0 && second[2] > 0.0 && second[1] == 0.0 && second[3] == 0.0, "top-k 2");
        assert!(rows[2].is_none(), "a NaN temperature has no distribution");
        let short = RowSettings { top_p: Some(vec![0.5]), ..RowSettings::default() };
        assert!(sample_distribution_with_settings(&logits, shape, &Sampler::default(), &short).is_err());
    }
}
