//! The reviewed native-label → UCS tables (`train/corpus/<dataset>.csv`): the native-label rule,
//! parsing and checking a table, and the mechanical review rules a new table must follow.

use anyhow::{bail, Context, Result};
use sfxtag_core::ucs;
use std::collections::{BTreeMap, BTreeSet};

/// The native label of a file: its folder path plus its stem without trailing numbers
/// (`actor/fauna/animal/camel_10.ogg` → `actor/fauna/animal/camel`,
/// `default/sounds/default_dig_cracky.2.ogg` → `default/sounds/default_dig_cracky`,
/// `bat-hit-1.ogg` → `bat-hit`). A stem that is only digits is kept whole.
pub fn native_label(rel_path: &str) -> String {
    let path = rel_path.replace('\\', "/");
    let (folder, base) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path.as_str()),
    };
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    let is_sep = |c: char| matches!(c, ' ' | '.' | '_' | '-');
    let mut s = stem;
    loop {
        let t = s.trim_end_matches(|c: char| c.is_ascii_digit());
        if t.len() == s.len() {
            break;
        }
        s = t.trim_end_matches(is_sep);
    }
    let s = s.trim_end_matches(is_sep);
    let s = if s.is_empty() { stem } else { s };
    if folder.is_empty() {
        s.to_string()
    } else {
        format!("{folder}/{s}")
    }
}

/// One row of a reviewed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    pub path: String,
    pub native_label: String,
    pub ucs_catid: String,
}

/// Parses and checks a reviewed table: header `path,native_label,ucs_catid`, every CatID a
/// non-archived UCS CatID, no duplicate path, one CatID per native label.
pub fn parse_table(text: &str, source: &str) -> Result<Vec<TableRow>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .with_context(|| format!("{source}: no header"))?;
    let want = ["path", "native_label", "ucs_catid"];
    if headers.iter().map(str::trim).collect::<Vec<_>>() != want {
        bail!(
            "{source}: the header must be `path,native_label,ucs_catid`, found `{}`",
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    let mut rows = Vec::new();
    let mut paths = BTreeSet::new();
    let mut label_cat: BTreeMap<String, String> = BTreeMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{source}:{line}: bad CSV row"))?;
        let field = |k: usize| rec.get(k).unwrap_or("").trim().to_string();
        let row = TableRow {
            path: field(0),
            native_label: field(1),
            ucs_catid: field(2),
        };
        if row.path.is_empty() || row.native_label.is_empty() {
            bail!("{source}:{line}: empty path or native label");
        }
        check_label_cat_id(&row.ucs_catid)
            .with_context(|| format!("{source}:{line} ({})", row.path))?;
        if !paths.insert(row.path.clone()) {
            bail!("{source}:{line}: path {} listed twice", row.path);
        }
        if let Some(prev) = label_cat.insert(row.native_label.clone(), row.ucs_catid.clone()) {
            if prev != row.ucs_catid {
                bail!(
                    "{source}:{line}: native label {} maps to both {prev} and {} (a reviewed table keeps one CatID per label)",
                    row.native_label,
                    row.ucs_catid
                );
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A CatID usable as a label: known to UCS and not archived.
pub fn check_label_cat_id(cat_id: &str) -> Result<&'static ucs::UcsEntry> {
    let e = ucs::validate_cat_id(cat_id).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !e.is_label() {
        bail!("{}", ucs::UcsError::ArchivedLabel(cat_id.to_string()));
    }
    Ok(e)
}

/// The draft-review rules of `train/corpus/review.py` that a new table must also follow,
/// applied to one draft row: `Some(catid)` keeps the row. (The curated per-label fixes of the
/// one-off review live in the script; these are the mechanical rules.)
pub fn review_draft_row(path: &str, draft_catid: &str, drop_prefixes: &[&str]) -> Option<String> {
    let cat = draft_catid.trim();
    if drop_prefixes.iter().any(|p| path.starts_with(p)) || cat.is_empty() {
        return None;
    }
    let label = native_label(path);
    let stem = label
        .rsplit('/')
        .next()
        .unwrap_or(&label)
        .to_ascii_lowercase();
    const GENERIC: &[&str] = &[
        "notify", "power", "switch", "transit", "original", "theme", "custom",
    ];
    if GENERIC.contains(&stem.as_str()) {
        return None;
    }
    check_label_cat_id(cat).ok().map(|e| e.cat_id.to_string())
}
