//! From labels to what a clip is called and tagged with: the UCS file name
//! (`CatID_FXName_CreatorID_SourceID`) and the `bext`/iXML fields. Pure; shared by the recorder
//! and `sfxtag tag`.

use super::bwf::ClipMeta;
use crate::classify::Label;
use sfxtag_core::ucs;
use std::time::SystemTime;

/// Who and where: filled from `[record]` (or `sfxtag tag` options).
#[derive(Debug, Clone, PartialEq)]
pub struct TagSettings {
    pub creator_id: String,
    pub source_id: String,
    pub designer: String,
    pub library: String,
    pub location: String,
    /// CatID for a clip without any UCS label (e.g. a quiet continuous take).
    pub fallback_catid: String,
}

impl Default for TagSettings {
    fn default() -> Self {
        Self {
            creator_id: "SFXTAG".into(),
            source_id: "NONE".into(),
            designer: String::new(),
            library: String::new(),
            location: String::new(),
            fallback_catid: "AMBMisc".into(),
        }
    }
}

/// A clip's tags and the parts of its file name.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagging {
    pub meta: ClipMeta,
    /// First block of the name: the CatID (or, for a custom taxonomy, the label).
    pub first_block: String,
    creator_id: String,
    source_id: String,
}

impl Tagging {
    /// The same tags with the FX name numbered for collision attempt `n` (1: unchanged), so the
    /// iXML FXNAME matches the file name.
    pub fn numbered(&self, n: u32) -> Tagging {
        let mut t = self.clone();
        if n > 1 {
            t.meta.fx_name = format!("{} {n:02}", self.meta.fx_name);
            t.meta.track_title = t.meta.fx_name.clone();
        }
        t
    }

    /// The first collision attempt whose `<name>.wav` is free in `dir`.
    pub fn first_free(&self, dir: &std::path::Path) -> u32 {
        (1..10_000)
            .find(|&n| !dir.join(format!("{}.wav", self.name(n))).exists())
            .unwrap_or(10_000)
    }

    /// The file name (no extension) for collision attempt `n` (1 first: no number).
    pub fn name(&self, n: u32) -> String {
        let fx = if n <= 1 {
            self.meta.fx_name.clone()
        } else {
            format!("{} {n:02}", self.meta.fx_name)
        };
        format!(
            "{}_{}_{}_{}",
            ucs::sanitize_block(&self.first_block),
            ucs::sanitize_block(&fx),
            ucs::sanitize_block(&self.creator_id),
            ucs::sanitize_block(&self.source_id)
        )
    }
}

fn title(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(c.flat_map(|x| x.to_lowercase()))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// Tags for a clip with `labels` (best first; `score` = the label's score in the clip).
/// `fx_name` overrides the generated FX name (an existing file keeps its own).
pub fn tag_clip(
    labels: &[Label],
    settings: &TagSettings,
    model: &str,
    started: Option<SystemTime>,
    reference: &str,
    fx_name: Option<&str>,
) -> Tagging {
    // A CatID label, else a Category label's unspecified (`…Misc`) CatID.
    let ucs_entry = labels
        .iter()
        .find_map(|l| l.catid.as_deref().and_then(ucs::lookup))
        .or_else(|| {
            labels
                .iter()
                .find_map(|l| l.category.as_deref().and_then(ucs::misc_of))
        });
    let entry = ucs_entry.or_else(|| ucs::lookup(&settings.fallback_catid));
    let custom = labels.first().filter(|_| ucs_entry.is_none());
    let (first_block, category, subcategory, generated_fx) = match (custom, entry) {
        (Some(l), _) => (
            l.label.clone(),
            String::new(),
            String::new(),
            title(&l.label),
        ),
        (None, Some(e)) => (
            e.cat_id.to_string(),
            e.category.to_string(),
            e.subcategory.to_string(),
            title(&format!("{} {}", e.category, e.subcategory)),
        ),
        (None, None) => (
            settings.fallback_catid.clone(),
            String::new(),
            String::new(),
            "Recording".into(),
        ),
    };
    let fx = fx_name
        .map(str::to_string)
        .filter(|s| !ucs::sanitize_block(s).is_empty())
        .unwrap_or(generated_fx);
    let scored: Vec<String> = labels
        .iter()
        .map(|l| format!("{} {:.2}", l.short(), l.score))
        .collect();
    let description = if labels.is_empty() {
        format!("{} (no label above threshold)", fx)
    } else {
        let best = &labels[0];
        let name = match (&best.category, &best.subcategory) {
            (Some(c), Some(s)) => format!("{c}-{s}"),
            _ => best.label.clone(),
        };
        let mut d = format!("{name} {:.2}", best.score);
        if labels.len() > 1 {
            d += &format!("; also {}", scored[1..].join(", "));
        }
        d
    };
    let mut keywords: Vec<String> = Vec::new();
    let mut add = |k: &str| {
        let k = k.trim();
        if !k.is_empty() && !keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            keywords.push(k.to_string());
        }
    };
    for l in labels {
        add(l.short());
        if let Some(c) = &l.category {
            add(c);
        }
        if let Some(s) = &l.subcategory {
            add(s);
        }
    }
    if let Some(e) = ucs_entry {
        for s in e.synonym_list().take(12) {
            add(s);
        }
    }
    add("sfxtag");
    let notes = if labels.is_empty() {
        format!(
            "Tagged by sfxtag {} with model {model}: no label above threshold.",
            env!("CARGO_PKG_VERSION")
        )
    } else {
        format!(
            "Tagged by sfxtag {} with model {model}. Scores: {}.",
            env!("CARGO_PKG_VERSION"),
            scored.join(", ")
        )
    };
    Tagging {
        meta: ClipMeta {
            description,
            originator: "sfxtag".into(),
            originator_reference: reference.chars().take(32).collect(),
            started,
            catid: if custom.is_some() {
                String::new()
            } else {
                first_block.clone()
            },
            category,
            subcategory,
            fx_name: fx.clone(),
            keywords,
            notes,
            designer: settings.designer.clone(),
            library: settings.library.clone(),
            location: settings.location.clone(),
            track_title: fx,
        },
        first_block,
        creator_id: settings.creator_id.clone(),
        source_id: settings.source_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfxtag_core::manifest::Taxonomy;

    #[test]
    fn ucs_labels_give_a_ucs_name_and_soundminer_fields() {
        let labels = vec![
            Label::new("DOORWood", Taxonomy::UcsCatId, 0.91),
            Label::new("DOGBark", Taxonomy::UcsCatId, 0.42),
        ];
        let s = TagSettings {
            creator_id: "AB".into(),
            source_id: "Garden_2026".into(),
            ..Default::default()
        };
        let t = tag_clip(&labels, &s, "aisfx-cnn9", None, "REF", None);
        assert_eq!(t.name(1), "DOORWood_Doors Wood_AB_Garden 2026");
        assert_eq!(t.name(3), "DOORWood_Doors Wood 03_AB_Garden 2026");
        let t3 = t.numbered(3);
        assert_eq!(t3.name(1), t.name(3));
        assert_eq!(t3.meta.fx_name, "Doors Wood 03");
        let parsed = ucs::parse_name(&t.name(1)).unwrap();
        assert_eq!(parsed.cat_id.cat_id, "DOORWood");
        assert_eq!(t.meta.catid, "DOORWood");
        assert_eq!(t.meta.category_full(), "DOORS-WOOD");
        assert!(t
            .meta
            .description
            .starts_with("DOORS-WOOD 0.91; also DOGBark 0.42"));
        assert!(t.meta.notes.contains("aisfx-cnn9") && t.meta.notes.contains("DOORWood 0.91"));
        assert!(t.meta.keywords.iter().any(|k| k == "DOGBark"));
    }

    #[test]
    fn custom_labels_and_no_labels_still_get_names() {
        let custom = vec![Label::new("kettle", Taxonomy::Custom, 0.8)];
        let t = tag_clip(&custom, &TagSettings::default(), "m", None, "R", None);
        assert_eq!(t.name(1), "kettle_Kettle_SFXTAG_NONE");
        assert!(t.meta.catid.is_empty());
        let none = tag_clip(
            &[],
            &TagSettings::default(),
            "m",
            None,
            "R",
            Some("Garden take"),
        );
        assert_eq!(none.name(1), "AMBMisc_Garden take_SFXTAG_NONE");
        assert_eq!(none.meta.category, "AMBIENCE");
        assert!(none.meta.notes.contains("no label"));
    }
}
