//! Medians and ranges over runs, and the paired ratios that compare a mode
//! with the baseline run right before it in the same round.

use serde::Serialize;

/// The median and the range of some runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// Summarizes `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Summary { median, min: v[0], max: v[n - 1], n })
    }

    /// `median [min–max]` with `decimals` digits after the point.
    pub fn show(&self, decimals: usize) -> String {
        format!("{:.d$} [{:.d$}–{:.d$}]", self.median, self.min, self.max, d = decimals)
    }
}

/// `f(mode, baseline)` for each round both ran in.
pub fn paired(mode: &[f64], baseline: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    mode.iter().zip(baseline).map(|(&m, &b)| f(m, b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn ratios_pair_rounds() {
        assert_eq!(paired(&[2.0, 3.0], &[1.0, 2.0], |m, b| m / b), vec![2.0, 1.5]);
    }
}
