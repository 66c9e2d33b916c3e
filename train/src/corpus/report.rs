//! What the corpus holds per UCS Category: distinct clips (duplicates left out), sources and
//! hours, and which Categories have enough of both to be a class of a head.

use super::CorpusIndex;
use crate::prepare::{frames_to_s, PreparedIndex};
use anyhow::{Context, Result};
use sfxtag_core::ucs;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;

/// A Category is a class of the heads with at least this many distinct clips…
pub const MIN_CLIPS: usize = 15;
/// …from at least this many source groups.
pub const MIN_SOURCES: usize = 2;

/// Per-Category totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoryStats {
    pub clips: usize,
    pub seconds: f64,
    /// Source groups with at least one clip.
    pub sources: BTreeSet<String>,
}

impl CategoryStats {
    pub fn eligible(&self) -> bool {
        self.clips >= MIN_CLIPS && self.sources.len() >= MIN_SOURCES
    }
}

/// The corpus report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub categories: BTreeMap<String, CategoryStats>,
    /// dataset → (clips kept, duplicates left out, seconds kept)
    pub datasets: BTreeMap<String, (usize, usize, f64)>,
    pub duplicates: usize,
}

/// Counts the prepared corpus (clips that decoded), leaving out `excluded` duplicates.
pub fn build(
    cache: &Path,
    index: &CorpusIndex,
    excluded: &HashSet<(String, String)>,
) -> Result<Report> {
    let mut r = Report {
        duplicates: excluded.len(),
        ..Default::default()
    };
    for d in &index.datasets {
        let p = crate::prepare::dataset_dir(cache, &d.name).join("index.json");
        let idx: PreparedIndex = serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("{} is not prepared", d.name))?,
        )
        .with_context(|| format!("{}: bad index", p.display()))?;
        let entry = r.datasets.entry(d.name.clone()).or_default();
        for c in &idx.clips {
            if excluded.contains(&(d.name.clone(), c.rel_path.clone())) {
                entry.1 += 1;
                continue;
            }
            let secs = frames_to_s(c.frames);
            entry.0 += 1;
            entry.2 += secs;
            let Some(cat) = c
                .ucs_catid
                .as_deref()
                .and_then(ucs::lookup)
                .map(|e| e.category.to_string())
            else {
                continue;
            };
            let s = r.categories.entry(cat).or_default();
            s.clips += 1;
            s.seconds += secs;
            s.sources.insert(d.group().to_string());
        }
    }
    Ok(r)
}

impl Report {
    /// Categories that are classes of the heads, sorted.
    pub fn eligible(&self) -> Vec<String> {
        self.categories
            .iter()
            .filter(|(_, s)| s.eligible())
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let (clips, dups, secs) = self
            .datasets
            .values()
            .fold((0, 0, 0.0), |a, d| (a.0 + d.0, a.1 + d.1, a.2 + d.2));
        let _ = writeln!(
            s,
            "{clips} distinct clips ({:.2} h) in {} datasets; {dups} duplicates left out.\n",
            secs / 3600.0,
            self.datasets.len()
        );
        let _ = writeln!(s, "| Category | clips | sources | hours | head class |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
        let mut rows: Vec<_> = self.categories.iter().collect();
        rows.sort_by(|a, b| b.1.clips.cmp(&a.1.clips).then(a.0.cmp(b.0)));
        for (c, st) in rows {
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {:.2} | {} |",
                st.clips,
                st.sources.len(),
                st.seconds / 3600.0,
                if st.eligible() { "yes" } else { "no" }
            );
        }
        let missing: Vec<&str> = ucs::label_categories()
            .into_iter()
            .filter(|c| !self.categories.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(s, "\nNo clips at all: {}.", missing.join(", "));
        }
        let _ = writeln!(s, "\n| dataset | clips | duplicates left out | hours |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
        for (d, (n, dup, secs)) in &self.datasets {
            let _ = writeln!(s, "| {d} | {n} | {dup} | {:.2} |", secs / 3600.0);
        }
        s
    }
}
