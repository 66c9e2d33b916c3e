//! The labelled view of an embedding store: per clip its source group, UCS Category and CatID
//! class indices and window rows, and the class sets of the heads (Categories with enough
//! distinct clips from enough sources; CatIDs with enough clips).

use super::embed::Store;
use crate::corpus::report::{MIN_CLIPS, MIN_SOURCES};
use anyhow::{bail, Result};
use sfxtag_core::ucs;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// One clip with its labels as class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledClip {
    pub group: usize,
    pub dataset: String,
    pub rel_path: String,
    /// Index into [`Labelled::categories`], when the Category is a head class.
    pub category: Option<usize>,
    /// Index into [`Labelled::catids`], when the CatID is a head class.
    pub catid: Option<usize>,
    /// The UCS Category name, whether or not it is a class.
    pub category_name: Option<String>,
    pub rows: Range<usize>,
}

/// Clips, classes and groups of one store.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub clips: Vec<LabelledClip>,
    pub categories: Vec<String>,
    pub catids: Vec<String>,
    pub groups: Vec<String>,
}

/// Which Categories and CatIDs are head classes, from `(group, catid)` of every distinct clip:
/// a Category needs [`MIN_CLIPS`] clips from [`MIN_SOURCES`] groups, a CatID [`MIN_CLIPS`] clips.
pub fn class_sets<'a>(
    clips: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Vec<String>, Vec<String>) {
    let mut cat: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    let mut catid: BTreeMap<&str, usize> = BTreeMap::new();
    for (group, id) in clips {
        let Some(e) = ucs::lookup(id) else { continue };
        let c = cat.entry(e.category).or_default();
        c.0 += 1;
        c.1.insert(group);
        *catid.entry(e.cat_id).or_default() += 1;
    }
    let categories = cat
        .into_iter()
        .filter(|(_, (n, g))| *n >= MIN_CLIPS && g.len() >= MIN_SOURCES)
        .map(|(c, _)| c.to_string())
        .collect();
    let catids = catid
        .into_iter()
        .filter(|(_, n)| *n >= MIN_CLIPS)
        .map(|(c, _)| c.to_string())
        .collect();
    (categories, catids)
}

impl Labelled {
    /// Labels a store with class sets computed from it.
    pub fn new(store: &Store) -> Result<Self> {
        let (categories, catids) = class_sets(
            store
                .clips
                .iter()
                .zip(&store.groups)
                .filter_map(|(c, g)| c.ucs_catid.as_deref().map(|id| (g.as_str(), id))),
        );
        if categories.len() < 2 {
            bail!(
                "only {} UCS Categor{} with {MIN_CLIPS}+ clips from {MIN_SOURCES}+ sources: a head needs at least two (add datasets)",
                categories.len(),
                if categories.len() == 1 { "y" } else { "ies" }
            );
        }
        Ok(Self::with_classes(store, categories, catids))
    }

    /// Labels a store with given class sets (e.g. the clean store's, for the noisy one).
    pub fn with_classes(store: &Store, categories: Vec<String>, catids: Vec<String>) -> Self {
        let groups: Vec<String> = store
            .groups
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let clips = store
            .clips
            .iter()
            .zip(&store.groups)
            .map(|(c, g)| {
                let entry = c.ucs_catid.as_deref().and_then(ucs::lookup);
                let category_name = entry.map(|e| e.category.to_string());
                LabelledClip {
                    group: groups.binary_search(g).expect("group listed"),
                    dataset: c.dataset.clone(),
                    rel_path: c.rel_path.clone(),
                    category: category_name
                        .as_ref()
                        .and_then(|n| categories.binary_search(n).ok()),
                    catid: entry
                        .and_then(|e| catids.binary_search_by(|x| x.as_str().cmp(e.cat_id)).ok()),
                    category_name,
                    rows: c.first..c.first + c.windows,
                }
            })
            .collect();
        Self {
            clips,
            categories,
            catids,
            groups,
        }
    }

    /// Index of a group by name.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sets_need_clips_and_sources() {
        let mut clips = Vec::new();
        // DOORS: 15 clips from 2 groups → class; DOORWood has 15 → CatID class.
        for i in 0..15 {
            clips.push((if i < 10 { "a" } else { "b" }, "DOORWood"));
        }
        // GLASS: 20 clips, one group → not a Category class, but GLASBrk is a CatID class.
        for _ in 0..20 {
            clips.push(("a", "GLASBrk"));
        }
        // FIRE: 14 clips from 3 groups → too few.
        for i in 0..14 {
            clips.push((["a", "b", "c"][i % 3], "FIREBurn"));
        }
        let (cats, ids) = class_sets(clips.iter().copied());
        assert_eq!(cats, ["DOORS"]);
        assert_eq!(ids, ["DOORWood", "GLASBrk"]);
    }
}
