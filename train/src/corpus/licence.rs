//! Licences and attribution: DEP-5 (machine-readable) copyright files, which stanza applies to
//! an installed file, and the per-dataset sections of the generated `ATTRIBUTION` file.

use super::{Clip, DatasetInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A `Files:` stanza of a machine-readable (DEP-5) copyright file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dep5Stanza {
    pub files: Vec<String>,
    pub copyright: Vec<String>,
    /// The short licence name (first line of `License:`).
    pub license: String,
}

/// Parses the `Files:` stanzas of a DEP-5 copyright file (other stanzas are ignored).
pub fn parse_dep5(text: &str) -> Vec<Dep5Stanza> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut st = Dep5Stanza::default();
        let mut field = String::new();
        for line in para.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                let v = line.trim();
                if v == "." || v.is_empty() {
                    continue;
                }
                match field.as_str() {
                    "files" => st.files.extend(v.split_whitespace().map(str::to_string)),
                    "copyright" => st.copyright.push(v.to_string()),
                    _ => {}
                }
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            field = k.trim().to_ascii_lowercase();
            let v = v.trim();
            match field.as_str() {
                "files" => st.files.extend(v.split_whitespace().map(str::to_string)),
                "copyright" if !v.is_empty() => st.copyright.push(v.to_string()),
                "license" => st.license = v.to_string(),
                _ => {}
            }
        }
        if !st.files.is_empty() && !st.license.is_empty() {
            out.push(st);
        }
    }
    out
}

/// The stanza that applies to an installed file. Installed paths differ from the source paths
/// that `Files:` patterns name (`share/hedgewars/Data/Sounds/*` is installed under
/// `usr/share/games/hedgewars/Data/Sounds/`), so a pattern matches when it, or it without its
/// first folder (as long as a literal folder remains), matches a `/`-aligned suffix of the
/// installed path. Of the matching stanzas the most specific pattern (most literal characters)
/// wins, ties going to the later stanza as in DEP-5 ("last match wins"); plain suffix matching
/// would otherwise let a source folder such as `hedgewars/*` override the data's own stanza.
pub fn licence_for<'a>(stanzas: &'a [Dep5Stanza], installed: &str) -> Option<&'a Dep5Stanza> {
    let suffixes: Vec<&str> = std::iter::once(installed)
        .chain(
            installed
                .match_indices('/')
                .map(|(i, _)| &installed[i + 1..]),
        )
        .collect();
    let matches = |pat: &str| {
        if suffixes.iter().any(|suf| glob_match(pat, suf)) {
            return true;
        }
        // One leading source folder (`share/`, `mtg/`) may be absent from the installed path;
        // dropping more would let `mtg/mods/xpanes/sounds/*` match any `sounds/` folder.
        match pat.split_once('/') {
            Some((_, rest))
                if rest.contains('/')
                    && !rest.split('/').next().unwrap_or("*").contains(['*', '?']) =>
            {
                suffixes.iter().any(|suf| glob_match(rest, suf))
            }
            _ => false,
        }
    };
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in stanzas.iter().enumerate() {
        let score = s
            .files
            .iter()
            .filter(|p| matches(p))
            .map(|p| p.chars().filter(|c| !matches!(c, '*' | '?')).count())
            .max();
        if let Some(sc) = score {
            if best.is_none_or(|(b, _)| sc >= b) {
                best = Some((sc, i));
            }
        }
    }
    best.map(|(_, i)| &stanzas[i])
}

/// DEP-5 glob: `*` matches any run of characters (`/` included), `?` one character.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The stanza for a path inside a package: the path itself, else (for an archive member) the
/// archive file, which is what a copyright file can name.
pub fn for_package_path<'a>(stanzas: &'a [Dep5Stanza], path: &str) -> Option<&'a Dep5Stanza> {
    licence_for(stanzas, path).or_else(|| {
        let parts: Vec<&str> = path.split('/').collect();
        let archive = parts
            .iter()
            .position(|p| super::readers::ArchiveKind::from_name(p).is_some())?;
        licence_for(stanzas, &parts[..=archive].join("/"))
    })
}

/// The first lines of the generated `ATTRIBUTION` file.
pub const ATTRIBUTION_HEADER: &str = "sfxtag training corpus — attribution

Generated by `sfxtag-train corpus fetch`. Each dataset below lists its source, version,
the licences and copyright lines that apply to the files used, and the files themselves.
The full licence texts are in each Debian package's usr/share/doc/<package>/copyright, and for
a PyPI package in the copyright file its section names.

";

const RULE: &str = "==============================================================================";

/// The `ATTRIBUTION` section of one package dataset.
pub fn package_section(
    p: &super::Package,
    version: &str,
    copyright: Option<&str>,
    stanzas: &[Dep5Stanza],
    copyright_lines: &BTreeMap<String, BTreeSet<String>>,
    clips: &[Clip],
) -> String {
    let mut attr = String::new();
    let _ = writeln!(attr, "{RULE}");
    let (kind, copyright_file) = p.kind_and_copyright_file();
    let _ = writeln!(
        attr,
        "Dataset {} — {kind} {} {}",
        p.dataset, p.name, version
    );
    let _ = writeln!(attr, "Audio root: {}", p.audio_root);
    let _ = writeln!(attr, "Copyright file: {copyright_file}");
    if stanzas.is_empty() {
        let _ = writeln!(
            attr,
            "  (not machine-readable: the package's licence is {}; its copyright lines follow)",
            p.licence
        );
        let mut seen = BTreeSet::new();
        for line in copyright.unwrap_or("").lines() {
            let t = line.trim();
            let l = t.to_ascii_lowercase();
            if (l.starts_with("copyright") || l.contains("(c)"))
                && t.len() > 12
                && seen.insert(t.to_string())
            {
                let _ = writeln!(attr, "  {t}");
            }
        }
    }
    for (lic, holders) in copyright_lines {
        let n = clips.iter().filter(|c| &c.licence == lic).count();
        let _ = writeln!(attr, "License: {lic} ({n} files)");
        for h in holders {
            let _ = writeln!(attr, "  Copyright: {h}");
        }
    }
    let _ = writeln!(attr, "Files used ({}):", clips.len());
    for c in clips {
        let _ = writeln!(attr, "  {}  [{}]", c.rel_path, c.licence);
    }
    let _ = writeln!(attr);
    attr
}

/// The `ATTRIBUTION` section of a user-supplied source (UCS folder or CSV list).
pub fn user_section(info: &DatasetInfo, clips: &[Clip]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{RULE}");
    let _ = writeln!(s, "Dataset {} — {}", info.name, info.source);
    for l in &info.licences {
        let _ = writeln!(s, "License: {l}");
    }
    let _ = writeln!(s, "Files used ({}):", clips.len());
    for c in clips {
        let _ = writeln!(s, "  {}", c.rel_path);
    }
    let _ = writeln!(s);
    s
}
