//! The training corpus: which clips, with which labels, under which licence.
//!
//! Sources, each kept as its own dataset with its own native taxonomy:
//! - packages ([`sources::PACKAGES`]): Debian packages fetched with `apt-get download` and
//!   `dpkg -x`, Python wheels with `pip download` ([`pypi`]), or either taken from an already
//!   unpacked folder; read through the archives they ship audio in ([`readers`]) and labelled by
//!   the reviewed tables `train/corpus/<dataset>.csv` (`path,native_label,ucs_catid`, embedded
//!   in the binary; [`tables`]);
//! - folders of UCS-named files and CSV lists `path,label` ([`user`]).
//!
//! [`fetch`] writes the corpus index `corpus.json` ([`CorpusIndex`]) and an `ATTRIBUTION` file
//! ([`licence`]) into the cache folder; `prepare` (see [`crate::prepare`]) turns the index into
//! mel caches, and [`dedup`] finds the recordings that several sources share.

pub mod apt;
pub mod dedup;
pub mod licence;
pub mod pypi;
pub mod readers;
pub mod report;
pub mod sources;
pub mod tables;
pub mod user;

pub use apt::{download_deb, unpack_deb};
pub use licence::{glob_match, licence_for, parse_dep5, Dep5Stanza};
pub use readers::PackageFs;
pub use sources::{package, Origin, Package, PACKAGES};
pub use tables::{check_label_cat_id, native_label, parse_table, review_draft_row, TableRow};
pub use user::{csv_dataset, ucs_dir_dataset};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// File name of the corpus index inside the cache folder.
pub const INDEX_FILE: &str = "corpus.json";
/// File name of the generated attribution inside the cache folder.
pub const ATTRIBUTION_FILE: &str = "ATTRIBUTION";
pub use readers::AUDIO_EXTS;

/// One clip of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Clip {
    pub dataset: String,
    /// Absolute path of the audio file (extracted from its archive where it was in one).
    pub path: PathBuf,
    /// Path relative to the dataset's root (as in the reviewed table).
    pub rel_path: String,
    pub native_label: String,
    /// The UCS CatID, where the source gives one.
    pub ucs_catid: Option<String>,
    pub licence: String,
    /// md5 of the file's bytes (the first, cheapest duplicate check).
    #[serde(default)]
    pub md5: String,
}

/// One dataset of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub name: String,
    /// `debian:<package>`, `ucs-dir:<folder>` or `csv:<file>`.
    pub source: String,
    pub version: String,
    /// Licences of the clips used (distinct, sorted).
    pub licences: Vec<String>,
    pub root: PathBuf,
    pub clips: usize,
    /// Whether every clip has a UCS CatID (tables, UCS folders).
    pub ucs_labels: bool,
    /// Table paths not found under the root (or not readable from their archive), with why.
    pub missing: Vec<String>,
    /// Audio files under the root that no table row labels (dropped in review or never mapped).
    pub unlabelled: usize,
    /// Source group for leave-one-source-out evaluation (defaults to the dataset name).
    #[serde(default)]
    pub group: String,
}

impl DatasetInfo {
    /// The leave-one-source-out group.
    pub fn group(&self) -> &str {
        if self.group.is_empty() {
            &self.name
        } else {
            &self.group
        }
    }
}

/// The corpus index written by `corpus fetch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CorpusIndex {
    pub datasets: Vec<DatasetInfo>,
    pub clips: Vec<Clip>,
}

impl CorpusIndex {
    pub fn load(cache: &Path) -> Result<Self> {
        let p = cache.join(INDEX_FILE);
        let text = fs::read_to_string(&p).with_context(|| {
            format!("cannot read the corpus index {} (run `sfxtag-train corpus fetch --cache {}` first)", p.display(), cache.display())
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a corpus index", p.display()))
    }

    pub fn save(&self, cache: &Path) -> Result<()> {
        fs::create_dir_all(cache)?;
        let p = cache.join(INDEX_FILE);
        let tmp = p.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        fs::rename(&tmp, &p)?;
        Ok(())
    }

    /// Clips of one dataset.
    pub fn dataset_clips<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Clip> + 'a {
        self.clips.iter().filter(move |c| c.dataset == name)
    }

    /// The leave-one-source-out group of a dataset.
    pub fn group_of(&self, dataset: &str) -> String {
        self.datasets
            .iter()
            .find(|d| d.name == dataset)
            .map(|d| d.group().to_string())
            .unwrap_or_else(|| dataset.to_string())
    }
}

/// What `corpus fetch` does.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub cache: PathBuf,
    /// Packages (package or dataset names); empty = all of them unless only other sources are
    /// given.
    pub packages: Vec<String>,
    /// Folder holding already unpacked packages, one sub-folder per package name
    /// (`DIR/<package>/usr/...`; for a PyPI package, the wheel itself in `DIR/<package>/`);
    /// nothing is downloaded then.
    pub from_dir: Option<PathBuf>,
    /// `(dataset, folder)` of UCS-named files.
    pub ucs_dirs: Vec<(String, PathBuf)>,
    /// `(dataset, file)` of `path,label` lists.
    pub csvs: Vec<(String, PathBuf)>,
    /// Licence text recorded for `--ucs-dir` and `--csv` sources.
    pub user_licence: Option<String>,
}

/// Parses `NAME=PATH` or `PATH` (the name is then the file stem).
pub fn named_path(arg: &str) -> (String, PathBuf) {
    match arg.split_once('=') {
        Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_string(), PathBuf::from(p)),
        _ => {
            let p = PathBuf::from(arg);
            let n = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "dataset".into());
            (n, p)
        }
    }
}

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("{}", msg.as_ref());
}

/// The packages a fetch covers: every package of the corpus when none is named (unless only
/// other sources are given); else the named ones, where `all` stands for every package of the
/// corpus (so `all,keyboardsounds` adds an optional package to it).
fn selected_packages(opts: &FetchOptions) -> Result<Vec<&'static Package>> {
    let mut pkgs: Vec<&Package> = Vec::new();
    if opts.packages.is_empty() {
        if opts.ucs_dirs.is_empty() && opts.csvs.is_empty() {
            match &opts.from_dir {
                Some(dir) => pkgs.extend(PACKAGES.iter().filter(|p| dir.join(p.name).is_dir())),
                None => pkgs.extend(PACKAGES.iter()),
            }
        }
        return Ok(pkgs);
    }
    for name in &opts.packages {
        let named: Vec<&'static Package> = if name == "all" {
            PACKAGES.iter().collect()
        } else {
            vec![package(name).with_context(|| {
                format!(
                    "unknown package {name}: `all`, or one of {}",
                    PACKAGES
                        .iter()
                        .chain(sources::OPTIONAL)
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?]
        };
        for p in named {
            if !pkgs.iter().any(|q| q.name == p.name) {
                pkgs.push(p);
            }
        }
    }
    Ok(pkgs)
}

/// Fetches every requested source and writes `corpus.json` and `ATTRIBUTION` into the cache.
pub fn fetch(opts: &FetchOptions) -> Result<CorpusIndex> {
    let cache = &opts.cache;
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let pkgs = selected_packages(opts)?;
    let mut index = CorpusIndex::default();
    let mut attribution = licence::ATTRIBUTION_HEADER.to_string();
    for p in pkgs {
        let t0 = std::time::Instant::now();
        let (unpacked, version) = match &opts.from_dir {
            Some(dir) => {
                let d = dir.join(p.name);
                if !d.is_dir() {
                    bail!(
                        "--from-dir {}: no folder {} (expected the unpacked package {})",
                        dir.display(),
                        d.display(),
                        p.name
                    );
                }
                (d, "unknown (unpacked folder)".to_string())
            }
            None => match p.origin {
                Origin::Debian => {
                    let deb = download_deb(&cache.join("debs"), p.name)?;
                    let version = apt::deb_version(&deb).unwrap_or_else(|_| "unknown".into());
                    let dest = cache.join("unpacked").join(p.name);
                    unpack_deb(&deb, &dest)?;
                    (dest, version)
                }
                Origin::PyPi {
                    version, sha256, ..
                } => {
                    let dir = cache.join("pypi").join(p.name);
                    pypi::download_wheel(&dir, p.name, version, sha256)?;
                    (dir, version.to_string())
                }
            },
        };
        let pfs = PackageFs::new(&unpacked, cache.join("extracted").join(p.name));
        let table = parse_table(p.table, &format!("train/corpus/{}.csv", p.dataset))?;
        let copyright = match p.origin {
            Origin::Debian => apt::find_copyright(&unpacked, p.name),
            Origin::PyPi { copyright, .. } => Some(copyright.to_string()),
        };
        let (info, clips, attr) = package_dataset(p, &pfs, &version, &table, copyright.as_deref())?;
        log(format!(
            "{}: {} clips, {} labels, {} missing, {} unlabelled files ({:.1} s)",
            p.name,
            info.clips,
            clips
                .iter()
                .map(|c| &c.native_label)
                .collect::<BTreeSet<_>>()
                .len(),
            info.missing.len(),
            info.unlabelled,
            t0.elapsed().as_secs_f64()
        ));
        for m in info.missing.iter().take(10) {
            log(format!("  missing: {m}"));
        }
        if info.clips == 0 {
            bail!(
                "{}: none of the {} clips of train/corpus/{}.csv was found in the package \
                 (audio root {}); e.g. {}",
                p.name,
                table.len(),
                p.dataset,
                p.audio_root,
                info.missing.first().map(String::as_str).unwrap_or("-")
            );
        }
        attribution.push_str(&attr);
        index.datasets.push(info);
        index.clips.extend(clips);
    }
    let user_licence = opts
        .user_licence
        .clone()
        .unwrap_or_else(|| "unspecified (user-supplied source)".into());
    for (name, dir) in &opts.ucs_dirs {
        let (info, clips) = ucs_dir_dataset(name, dir, &user_licence)?;
        log(format!(
            "{name}: {} UCS-named clips from {}",
            clips.len(),
            dir.display()
        ));
        attribution.push_str(&licence::user_section(&info, &clips));
        index.datasets.push(info);
        index.clips.extend(clips);
    }
    for (name, file) in &opts.csvs {
        let (info, clips) = csv_dataset(name, file, &user_licence)?;
        log(format!(
            "{name}: {} clips from {}",
            clips.len(),
            file.display()
        ));
        attribution.push_str(&licence::user_section(&info, &clips));
        index.datasets.push(info);
        index.clips.extend(clips);
    }
    let mut names = BTreeSet::new();
    for d in &index.datasets {
        if !names.insert(d.name.clone()) {
            bail!(
                "two sources share the dataset name {}: name them with NAME=PATH",
                d.name
            );
        }
        if d.name.is_empty() || d.name.contains(['/', '\\']) || d.name.starts_with('.') {
            bail!("dataset name {:?} is not usable as a folder name", d.name);
        }
    }
    index.save(cache)?;
    fs::write(cache.join(ATTRIBUTION_FILE), attribution)?;
    Ok(index)
}

/// Every audio file under `root`, as `/`-separated paths relative to it, sorted.
pub fn walk_audio(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() || (ft.is_symlink() && p.is_dir()) {
                stack.push(p);
            } else if readers::is_audio_name(&e.file_name().to_string_lossy()) {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// md5 of a file's bytes, lowercase hex.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    let bytes = fs::read(path)?;
    Ok(Md5::digest(&bytes)
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }))
}

/// Builds one package dataset: table rows checked against the audio under the package's audio
/// root (archives read through), members extracted into the cache. Returns the dataset, its clips
/// and its attribution section.
pub fn package_dataset(
    p: &Package,
    pfs: &PackageFs,
    version: &str,
    table: &[TableRow],
    copyright: Option<&str>,
) -> Result<(DatasetInfo, Vec<Clip>, String)> {
    let root = p.audio_root.trim_end_matches('/');
    let files: BTreeSet<String> = pfs
        .list_audio(root)
        .with_context(|| format!("{}: cannot list the audio under {root}", p.name))?
        .into_iter()
        .filter(|f| !p.exclude.iter().any(|e| f.starts_with(e)))
        .collect();
    let stanzas = copyright.map(parse_dep5).unwrap_or_default();
    let mut missing = Vec::new();
    let mut present = Vec::new();
    for row in table {
        if files.contains(&row.path) {
            present.push(row);
        } else {
            missing.push(row.path.clone());
        }
    }
    let virtual_paths: Vec<String> = present
        .iter()
        .map(|r| format!("{root}/{}", r.path))
        .collect();
    let real = pfs.materialize(&virtual_paths);
    let mut clips = Vec::new();
    let mut copyright_lines: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((row, vpath), real) in present.iter().zip(&virtual_paths).zip(real) {
        let (full, md5) = match real.map_err(anyhow::Error::from).and_then(|f| {
            let m = md5_file(&f).with_context(|| format!("cannot read {}", f.display()))?;
            Ok((f, m))
        }) {
            Ok(x) => x,
            Err(e) => {
                missing.push(format!("{} ({e:#})", row.path));
                continue;
            }
        };
        let (licence, holders) = match licence::for_package_path(&stanzas, vpath) {
            Some(s) => (s.license.clone(), s.copyright.clone()),
            None => (p.licence.to_string(), Vec::new()),
        };
        copyright_lines
            .entry(licence.clone())
            .or_default()
            .extend(holders);
        clips.push(Clip {
            dataset: p.dataset.to_string(),
            path: full,
            rel_path: row.path.clone(),
            native_label: row.native_label.clone(),
            ucs_catid: Some(row.ucs_catid.clone()),
            licence,
            md5,
        });
    }
    let licences: Vec<String> = clips
        .iter()
        .map(|c| c.licence.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let used = clips.len();
    let info = DatasetInfo {
        name: p.dataset.to_string(),
        source: p.source(),
        version: version.to_string(),
        licences,
        root: pfs.root.join(root),
        clips: clips.len(),
        ucs_labels: true,
        missing,
        unlabelled: files.len().saturating_sub(used),
        group: p.group.to_string(),
    };
    let attr = licence::package_section(p, version, copyright, &stanzas, &copyright_lines, &clips);
    Ok((info, clips, attr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(packages: &[&str]) -> Result<Vec<&'static str>> {
        let opts = FetchOptions {
            packages: packages.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Ok(selected_packages(&opts)?.iter().map(|p| p.name).collect())
    }

    #[test]
    fn optional_packages_are_fetched_only_when_named() {
        let every = selected(&[]).unwrap();
        assert_eq!(every.len(), PACKAGES.len());
        for p in sources::OPTIONAL {
            assert!(!every.contains(&p.name), "{} is optional", p.name);
        }
        // A Debian package is named by its dataset as well as its package name.
        assert_eq!(
            selected(&["all", "flare", "naev-data"]).unwrap()[PACKAGES.len()..],
            ["flare-game", "naev-data"]
        );
        let with = selected(&["all", "keyboardsounds", "0ad"]).unwrap();
        assert_eq!(with.len(), PACKAGES.len() + 1);
        assert_eq!(with.last(), Some(&"keyboardsounds"));
        assert_eq!(selected(&["keyboardsounds"]).unwrap(), ["keyboardsounds"]);
        let err = selected(&["nope"]).unwrap_err().to_string();
        assert!(
            err.contains("`all`") && err.contains("keyboardsounds"),
            "{err}"
        );
    }
}
