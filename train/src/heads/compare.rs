//! Two leave-one-source-out reports side by side (e.g. heads on the frozen encoder's embeddings
//! and on a fine-tuned encoder's, over the same folds): per method and variant, the mean top-1
//! of each, the mean of the paired per-fold differences and its standard error. A difference
//! within one standard error is a tie, the rule [`super::eval::choose_default`] applies.

use super::eval::EvalReport;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Mean and standard error of paired differences (`None` with fewer than two).
pub fn paired_mean_se(d: &[f64]) -> Option<(f64, f64)> {
    if d.len() < 2 {
        return None;
    }
    let n = d.len() as f64;
    let mu = d.iter().sum::<f64>() / n;
    let se = (d.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    Some((mu, se))
}

/// One method × variant compared on the folds both reports hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub method: String,
    pub variant: String,
    pub folds: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean of B − A over the folds, and its standard error.
    pub diff: f64,
    pub se: f64,
}

impl Comparison {
    /// "B better", "A better" (by more than one standard error) or "tie".
    pub fn verdict(&self) -> &'static str {
        if self.diff > self.se {
            "B better"
        } else if -self.diff > self.se {
            "A better"
        } else {
            "tie"
        }
    }
}

/// Every method and variant the two reports share, on their common folds (top-1, file level).
pub fn compare(a: &EvalReport, b: &EvalReport) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (method, vars_a) in &a.scores {
        let Some(vars_b) = b.scores.get(method) else {
            continue;
        };
        for (variant, folds_a) in vars_a {
            let Some(folds_b) = vars_b.get(variant) else {
                continue;
            };
            let pairs: Vec<(f64, f64)> = folds_a
                .iter()
                .filter_map(|(g, sa)| folds_b.get(g).map(|sb| (sa.top1, sb.top1)))
                .collect();
            let d: Vec<f64> = pairs.iter().map(|(x, y)| y - x).collect();
            let Some((diff, se)) = paired_mean_se(&d) else {
                continue;
            };
            let n = pairs.len() as f64;
            out.push(Comparison {
                method: method.clone(),
                variant: variant.clone(),
                folds: pairs.len(),
                mean_a: pairs.iter().map(|p| p.0).sum::<f64>() / n,
                mean_b: pairs.iter().map(|p| p.1).sum::<f64>() / n,
                diff,
                se,
            });
        }
    }
    out
}

/// Reads `loso.json` from a `heads --out` folder (or the file itself).
pub fn read_report(path: &Path) -> Result<EvalReport> {
    let file = if path.is_dir() {
        path.join("loso.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {} (a `heads --out` folder?)", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}

/// The comparison as a Markdown table.
pub fn markdown(a_name: &str, b_name: &str, rows: &[Comparison]) -> String {
    let mut s = format!(
        "A = {a_name}, B = {b_name}. Mean top-1 (file level) over the folds both hold; B − A: mean of the per-fold differences ± one standard error.\n\n\
         | method | variant | folds | A | B | B − A | verdict |\n| --- | --- | ---: | ---: | ---: | ---: | --- |\n"
    );
    for c in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} | {:+.3} ± {:.3} | {} |",
            c.method,
            c.variant,
            c.folds,
            c.mean_a,
            c.mean_b,
            c.diff,
            c.se,
            c.verdict()
        );
    }
    s
}

/// A short name for a report's folder: `runs/ft-x/loso` → `ft-x`, `runs/ft-x/loso-int8` →
/// `ft-x/loso-int8`, else the folder's own name.
pub fn run_name(path: &Path) -> String {
    let dir = if path.is_file() || path.extension().is_some_and(|e| e == "json") {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let own = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    match (own.as_deref(), dir.parent().and_then(|p| p.file_name())) {
        (Some("loso"), Some(parent)) => parent.to_string_lossy().into_owned(),
        (Some(n), Some(parent)) if n.starts_with("loso") => {
            format!("{}/{n}", parent.to_string_lossy())
        }
        (Some(n), _) => n.to_string(),
        _ => path.display().to_string(),
    }
}

/// Several reports against one baseline, one row each: per method and variant, the run's mean
/// top-1 and its paired difference from the baseline (± one standard error, and the verdict).
pub fn markdown_many(base_name: &str, runs: &[(String, Vec<Comparison>)]) -> String {
    // The columns: every method × variant of the first run that compares, in its order.
    let mut cols: Vec<(String, String)> = Vec::new();
    for (_, rows) in runs {
        for c in rows {
            let key = (c.method.clone(), c.variant.clone());
            if !cols.contains(&key) {
                cols.push(key);
            }
        }
    }
    let find = |rows: &[Comparison], (m, v): &(String, String)| {
        rows.iter()
            .find(|c| &c.method == m && &c.variant == v)
            .cloned()
    };
    let mut s = format!(
        "Mean top-1 (file level) over the folds each run shares with {base_name}; in brackets \
         the mean of the per-fold differences from it ± one standard error, and the verdict \
         (a difference within one standard error is a tie).\n\n| run |"
    );
    for (m, v) in &cols {
        let _ = write!(s, " {m}, {v} |");
    }
    s.push_str(" folds |\n| --- |");
    for _ in &cols {
        s.push_str(" ---: |");
    }
    s.push_str(" ---: |\n");
    // The baseline's own means (from the first run that has each column).
    let _ = write!(s, "| {base_name} (baseline) |");
    for col in &cols {
        match runs.iter().find_map(|(_, r)| find(r, col)) {
            Some(c) => {
                let _ = write!(s, " {:.3} |", c.mean_a);
            }
            None => s.push_str(" – |"),
        }
    }
    s.push_str(" |\n");
    for (name, rows) in runs {
        let _ = write!(s, "| {name} |");
        for col in &cols {
            match find(rows, col) {
                Some(c) => {
                    let word = match c.verdict() {
                        "B better" => "better",
                        "A better" => "worse",
                        _ => "tie",
                    };
                    let _ = write!(
                        s,
                        " {:.3} ({:+.3} ± {:.3}, {word}) |",
                        c.mean_b, c.diff, c.se
                    );
                }
                None => s.push_str(" – |"),
            }
        }
        let folds = rows.iter().map(|c| c.folds).max().unwrap_or(0);
        let _ = writeln!(s, " {folds} |");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::eval::Scores;
    use std::collections::BTreeMap;

    fn report(top1: &[(&str, f64)]) -> EvalReport {
        let folds: BTreeMap<String, Scores> = top1
            .iter()
            .map(|(g, t)| {
                (
                    g.to_string(),
                    Scores {
                        clips: 10,
                        top1: *t,
                        ..Scores::default()
                    },
                )
            })
            .collect();
        let mut r = EvalReport::default();
        r.scores
            .entry("(d) mlp-noise".into())
            .or_default()
            .insert("clean".into(), folds);
        r
    }

    #[test]
    fn paired_differences_on_common_folds_decide_the_verdict() {
        let a = report(&[("x", 0.4), ("y", 0.5), ("z", 0.6), ("only-a", 0.0)]);
        // +0.1 on every common fold: SE 0, B better.
        let b = report(&[("x", 0.5), ("y", 0.6), ("z", 0.7)]);
        let c = compare(&a, &b);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].folds, 3);
        assert!((c[0].diff - 0.1).abs() < 1e-9 && c[0].se < 1e-9);
        assert!((c[0].mean_a - 0.5).abs() < 1e-9);
        assert_eq!(c[0].verdict(), "B better");
        // +0.2, −0.2, +0.06: mean +0.02, SE ≈ 0.13: a tie.
        let b = report(&[("x", 0.6), ("y", 0.3), ("z", 0.66)]);
        let c = compare(&a, &b);
        assert_eq!(c[0].verdict(), "tie", "{c:?}");
        assert!(markdown("frozen", "tuned", &c)
            .contains("| (d) mlp-noise | clean | 3 | 0.500 | 0.520 | +0.020 ± "));
        // The other way round.
        assert_eq!(
            compare(&report(&[("x", 0.5), ("y", 0.6), ("z", 0.7)]), &a)[0].verdict(),
            "A better"
        );
    }

    #[test]
    fn several_runs_share_one_table_with_the_baseline_first() {
        let a = report(&[("x", 0.4), ("y", 0.5), ("z", 0.6)]);
        let up = compare(&a, &report(&[("x", 0.5), ("y", 0.6), ("z", 0.7)]));
        let down = compare(&a, &report(&[("x", 0.3), ("y", 0.4), ("z", 0.5)]));
        let md = markdown_many("frozen", &[("ft-a".into(), up), ("ft-b".into(), down)]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines.contains(&"| run | (d) mlp-noise, clean | folds |"),
            "{md}"
        );
        assert!(lines.contains(&"| frozen (baseline) | 0.500 | |"), "{md}");
        assert!(
            lines.contains(&"| ft-a | 0.600 (+0.100 ± 0.000, better) | 3 |"),
            "{md}"
        );
        assert!(
            lines.contains(&"| ft-b | 0.400 (-0.100 ± 0.000, worse) | 3 |"),
            "{md}"
        );
        assert_eq!(run_name(Path::new("runs/ft-xj-ce/loso")), "ft-xj-ce");
        assert_eq!(run_name(Path::new("runs/frozen-h1")), "frozen-h1");
        assert_eq!(run_name(Path::new("runs/ft-x/loso-int8")), "ft-x/loso-int8");
    }

    #[test]
    fn fewer_than_two_common_folds_compare_nothing() {
        let a = report(&[("x", 0.4)]);
        assert!(compare(&a, &a).is_empty());
        assert!(paired_mean_se(&[0.1]).is_none());
    }
}
