//! The Universal Category System v8.2.1 (embedded at compile time) and UCS file names.
//!
//! A CatID (e.g. `DOORWood`) names one Category/SubCategory pair. The `ARCHIVED` category keeps
//! retired CatIDs: they are valid in names but never used as labels.
//!
//! File names follow `CatID(-UserCategory)_(VendorCategory-)FXName_CreatorID_SourceID(_UserData)`;
//! only the CatID block is required, and CatIDs are case-sensitive.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// One row of the UCS list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UcsEntry {
    pub category: &'static str,
    pub subcategory: &'static str,
    pub cat_id: &'static str,
    pub cat_short: &'static str,
    pub explanation: &'static str,
    /// Comma-separated synonyms, as in the UCS list.
    pub synonyms: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/ucs_table.rs"));

/// The category whose CatIDs are retired and never labels.
pub const ARCHIVED: &str = "ARCHIVED";
/// Version of the embedded list.
pub const UCS_VERSION: &str = "8.2.1";

impl UcsEntry {
    /// `CATEGORY-SUBCATEGORY`, the UCS "CategoryFull".
    pub fn category_full(&self) -> String {
        alloc::format!("{}-{}", self.category, self.subcategory)
    }

    /// Whether this CatID may be used as a label (not archived).
    pub fn is_label(&self) -> bool {
        self.category != ARCHIVED
    }

    /// The synonyms as a list.
    pub fn synonym_list(&self) -> impl Iterator<Item = &'static str> {
        self.synonyms
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// Every CatID of the list, archived ones included, in list order.
pub fn entries() -> &'static [UcsEntry] {
    ENTRIES
}

/// Looks up a CatID (case-sensitive).
pub fn lookup(cat_id: &str) -> Option<&'static UcsEntry> {
    ENTRIES.iter().find(|e| e.cat_id == cat_id)
}

/// The `…Misc` CatID of a Category (its unspecified subcategory, e.g. `ANIMALS` → `ANMLMisc`),
/// when the Category has one.
pub fn misc_of(category: &str) -> Option<&'static UcsEntry> {
    ENTRIES
        .iter()
        .find(|e| e.category == category && e.subcategory == "MISC")
}

/// Looks up a CatID, or explains why it is not one (with a case-insensitive suggestion).
pub fn validate_cat_id(cat_id: &str) -> Result<&'static UcsEntry, UcsError> {
    if let Some(e) = lookup(cat_id) {
        return Ok(e);
    }
    let suggestion = ENTRIES
        .iter()
        .find(|e| e.cat_id.eq_ignore_ascii_case(cat_id))
        .map(|e| e.cat_id);
    Err(UcsError::UnknownCatId {
        cat_id: cat_id.to_string(),
        suggestion,
    })
}

/// The distinct categories in list order (82 in v8.2.1, `ARCHIVED` included).
pub fn categories() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in ENTRIES {
        if !out.contains(&e.category) {
            out.push(e.category);
        }
    }
    out
}

/// The categories usable as labels (all but `ARCHIVED`).
pub fn label_categories() -> Vec<&'static str> {
    categories()
        .into_iter()
        .filter(|c| *c != ARCHIVED)
        .collect()
}

/// Errors about UCS names and CatIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UcsError {
    UnknownCatId {
        cat_id: String,
        suggestion: Option<&'static str>,
    },
    EmptyName,
    ArchivedLabel(String),
}

impl fmt::Display for UcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UcsError::UnknownCatId {
                cat_id,
                suggestion: Some(s),
            } => write!(
                f,
                "'{cat_id}' is not a UCS v{UCS_VERSION} CatID (CatIDs are case-sensitive: did you mean '{s}'?)"
            ),
            UcsError::UnknownCatId { cat_id, .. } => write!(
                f,
                "'{cat_id}' is not a UCS v{UCS_VERSION} CatID: a UCS file name starts with a CatID such as 'DOORWood' followed by '_' or '-'"
            ),
            UcsError::EmptyName => write!(f, "empty file name: a UCS name starts with a CatID"),
            UcsError::ArchivedLabel(c) => write!(
                f,
                "'{c}' is an ARCHIVED UCS CatID and cannot be used as a label"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UcsError {}

/// A parsed UCS file name. Optional blocks are `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UcsName {
    pub cat_id: &'static UcsEntry,
    pub user_category: Option<String>,
    pub vendor_category: Option<String>,
    pub fx_name: Option<String>,
    pub creator_id: Option<String>,
    pub source_id: Option<String>,
    pub user_data: Option<String>,
}

/// Parses a UCS file name (with or without directory and extension).
pub fn parse_name(file_name: &str) -> Result<UcsName, UcsError> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    if stem.is_empty() {
        return Err(UcsError::EmptyName);
    }
    let mut blocks = stem.splitn(5, '_');
    let first = blocks.next().unwrap_or("");
    let (cat, user_category) = match first.split_once('-') {
        Some((c, u)) => (c, Some(u.to_string()).filter(|s| !s.is_empty())),
        None => (first, None),
    };
    let cat_id = validate_cat_id(cat)?;
    let fx_block = blocks.next();
    let (vendor_category, fx_name) = match fx_block {
        Some(b) => match b.split_once('-') {
            // Only a leading "Vendor-" block counts as a vendor category; FX names may hold dashes
            // elsewhere but UCS reserves the first dash of this block for the vendor.
            Some((v, fx)) if !v.is_empty() && !fx.is_empty() => {
                (Some(v.to_string()), Some(fx.to_string()))
            }
            _ => (None, Some(b.to_string()).filter(|s| !s.is_empty())),
        },
        None => (None, None),
    };
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    Ok(UcsName {
        cat_id,
        user_category,
        vendor_category,
        fx_name,
        creator_id: nonempty(blocks.next()),
        source_id: nonempty(blocks.next()),
        user_data: nonempty(blocks.next()),
    })
}

/// Makes `text` safe inside a UCS block: no `_` (block separator), no path or control characters.
pub fn sanitize_block(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '_' | '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let trimmed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    trimmed
}

/// Builds `CatID_FXName_CreatorID_SourceID` (without extension) from sanitised blocks.
pub fn format_name(cat_id: &UcsEntry, fx_name: &str, creator_id: &str, source_id: &str) -> String {
    alloc::format!(
        "{}_{}_{}_{}",
        cat_id.cat_id,
        sanitize_block(fx_name),
        sanitize_block(creator_id),
        sanitize_block(source_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_has_the_v821_counts() {
        assert_eq!(entries().len(), 753);
        assert_eq!(categories().len(), 82);
        assert_eq!(label_categories().len(), 81);
        assert!(!label_categories().contains(&ARCHIVED));
    }

    #[test]
    fn lookup_is_case_sensitive_and_suggests() {
        let e = lookup("DOORWood").expect("DOORWood");
        assert_eq!(e.category, "DOORS");
        assert_eq!(e.subcategory, "WOOD");
        assert!(lookup("doorwood").is_none());
        let err = validate_cat_id("doorwood").unwrap_err();
        assert_eq!(
            err,
            UcsError::UnknownCatId {
                cat_id: "doorwood".into(),
                suggestion: Some("DOORWood")
            }
        );
        assert!(err.to_string().contains("did you mean 'DOORWood'"));
    }

    #[test]
    fn parses_full_and_minimal_names() {
        let n = parse_name("dir/DOORWood-Barn_Acme-Creaky door slam_JD_ACME_take2.wav").unwrap();
        assert_eq!(n.cat_id.cat_id, "DOORWood");
        assert_eq!(n.user_category.as_deref(), Some("Barn"));
        assert_eq!(n.vendor_category.as_deref(), Some("Acme"));
        assert_eq!(n.fx_name.as_deref(), Some("Creaky door slam"));
        assert_eq!(n.creator_id.as_deref(), Some("JD"));
        assert_eq!(n.source_id.as_deref(), Some("ACME"));
        assert_eq!(n.user_data.as_deref(), Some("take2"));

        let m = parse_name("AMBForst_Forest (ID 0100)_BSB.ogg").unwrap();
        assert_eq!(m.cat_id.cat_id, "AMBForst");
        assert_eq!(m.fx_name.as_deref(), Some("Forest (ID 0100)"));
        assert_eq!(m.creator_id.as_deref(), Some("BSB"));
        assert_eq!(m.source_id, None);

        assert_eq!(parse_name("GUNAuto.flac").unwrap().cat_id.cat_id, "GUNAuto");
    }

    #[test]
    fn rejects_non_ucs_names() {
        assert!(matches!(
            parse_name("cat.mp3"),
            Err(UcsError::UnknownCatId { .. })
        ));
        assert_eq!(parse_name(""), Err(UcsError::EmptyName));
        assert!(parse_name("Door_wood_slam.wav").is_err());
    }

    #[test]
    fn format_round_trips_through_parse() {
        let e = lookup("ANMLFarm").unwrap();
        let name = format_name(e, "Sheep_bleat / close", "JD", "FIELD");
        assert_eq!(name, "ANMLFarm_Sheep bleat close_JD_FIELD");
        let back = parse_name(&name).unwrap();
        assert_eq!(back.fx_name.as_deref(), Some("Sheep bleat close"));
    }
}
