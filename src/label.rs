//! A label with its score, resolved against UCS where its taxonomy is UCS. Below both the
//! classifier and the reference sets, which both produce labels.

use serde::Serialize;
use sfxtag_core::manifest::Taxonomy;
use sfxtag_core::ucs;

/// One label with its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    /// The label as the model / reference set names it.
    pub label: String,
    /// UCS CatID (taxonomy `ucs-catid`, or the best CatID of a Category from a CatID head),
    /// else null.
    pub catid: Option<String>,
    /// UCS category (`ucs-catid` and `ucs-category`), else null.
    pub category: Option<String>,
    /// UCS subcategory (with a CatID), else null.
    pub subcategory: Option<String>,
    pub score: f32,
}

impl Label {
    /// Resolves `label` in `taxonomy`.
    pub fn new(label: &str, taxonomy: Taxonomy, score: f32) -> Self {
        let (catid, category, subcategory) = match taxonomy {
            Taxonomy::UcsCatId => match ucs::lookup(label) {
                Some(e) => (
                    Some(e.cat_id.to_string()),
                    Some(e.category.to_string()),
                    Some(e.subcategory.to_string()),
                ),
                None => (None, None, None),
            },
            Taxonomy::UcsCategory => (None, Some(label.to_string()), None),
            Taxonomy::Custom => (None, None, None),
        };
        Self {
            label: label.to_string(),
            catid,
            category,
            subcategory,
            score,
        }
    }

    /// Names the CatID of a Category label (from a CatID head), with its subcategory.
    pub fn with_catid(mut self, catid: &str) -> Self {
        if let Some(e) = ucs::lookup(catid) {
            if self.category.as_deref().is_none_or(|c| c == e.category) {
                self.catid = Some(e.cat_id.to_string());
                self.category = Some(e.category.to_string());
                self.subcategory = Some(e.subcategory.to_string());
            }
        }
        self
    }

    /// A short display form: the CatID, else the label.
    pub fn short(&self) -> &str {
        self.catid.as_deref().unwrap_or(&self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_against_ucs() {
        let l = Label::new("DOORWood", Taxonomy::UcsCatId, 0.5);
        assert_eq!(l.category.as_deref(), Some("DOORS"));
        assert_eq!(l.subcategory.as_deref(), Some("WOOD"));
        let c = Label::new("DOORS", Taxonomy::UcsCategory, 0.5);
        assert_eq!(
            (c.catid.clone(), c.category.as_deref()),
            (None, Some("DOORS"))
        );
        let x = Label::new("bark", Taxonomy::Custom, 0.5);
        assert_eq!(x.short(), "bark");
        // A Category takes a CatID of its own Category only.
        let c2 = c.clone().with_catid("DOORKnck");
        assert_eq!(c2.short(), "DOORKnck");
        assert_eq!(c2.label, "DOORS");
        assert_eq!(c.with_catid("ANMLFarm").catid, None);
    }
}
