//! The training corpus (DESIGN §7): which clips, with which labels, under which licence.
//!
//! Sources, each kept as its own dataset with its own native taxonomy:
//! - the six Debian game-data packages ([`PACKAGES`]), fetched with `apt-get download` and
//!   `dpkg -x` (or taken from an already unpacked folder) and labelled by the reviewed tables
//!   `train/corpus/<dataset>.csv` (`path,native_label,ucs_catid`, embedded in the binary);
//! - folders of UCS-named files (the CatID comes from the name, [`sfxtag_core::ucs::parse_name`]);
//! - CSV lists `path,label` (paths relative to the CSV file).
//!
//! [`fetch`] writes the corpus index `corpus.json` ([`CorpusIndex`]) and an `ATTRIBUTION` file
//! into the cache folder; `prepare` (see [`crate::prepare`]) turns the index into mel caches.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sfxtag_core::ucs;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// File name of the corpus index inside the cache folder.
pub const INDEX_FILE: &str = "corpus.json";
/// File name of the generated attribution inside the cache folder.
pub const ATTRIBUTION_FILE: &str = "ATTRIBUTION";
/// Extensions treated as audio when walking folders.
pub const AUDIO_EXTS: &[&str] = &["ogg", "wav", "flac", "mp3"];

/// One Debian game-data package of DESIGN §7.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// Debian package name.
    pub name: &'static str,
    /// Dataset name (and reviewed-table name).
    pub dataset: &'static str,
    /// The audio root inside the unpacked package (for 0ad: inside the extracted zip folder).
    pub audio_root: &'static str,
    /// For 0ad: the zip inside the package that holds `audio/`.
    pub zip: Option<&'static str>,
    /// Folders under the audio root never used (music).
    pub exclude: &'static [&'static str],
    /// The reviewed table (`path,native_label,ucs_catid`).
    pub table: &'static str,
    /// The package's licence per DESIGN §7, used where the copyright file names none for a file.
    pub licence: &'static str,
}

/// The six packages, with their audio roots (DESIGN §7).
pub const PACKAGES: &[Package] = &[
    Package {
        name: "0ad-data",
        dataset: "0ad",
        audio_root: "audio",
        zip: Some("usr/share/games/0ad/mods/public/public.zip"),
        exclude: &["music/"],
        table: include_str!("../corpus/0ad.csv"),
        licence: "CC-BY-SA-3.0",
    },
    Package {
        name: "hedgewars-data",
        dataset: "hedgewars",
        audio_root: "usr/share/games/hedgewars/Data/Sounds",
        zip: None,
        exclude: &[],
        table: include_str!("../corpus/hedgewars.csv"),
        licence: "GFDL-1.3",
    },
    Package {
        name: "wesnoth-1.16-data",
        dataset: "wesnoth",
        audio_root: "usr/share/games/wesnoth/1.16/data/core/sounds",
        zip: None,
        exclude: &[],
        table: include_str!("../corpus/wesnoth.csv"),
        licence: "GPL-2+",
    },
    Package {
        name: "redeclipse-data",
        dataset: "redeclipse",
        audio_root: "usr/share/games/redeclipse/data/sounds",
        zip: None,
        exclude: &[],
        table: include_str!("../corpus/redeclipse.csv"),
        licence: "CC-BY-SA-3.0",
    },
    Package {
        name: "minetest-data",
        dataset: "minetest",
        audio_root: "usr/share/games/minetest/games/minetest_game/mods",
        zip: None,
        exclude: &[],
        table: include_str!("../corpus/minetest.csv"),
        licence: "CC-BY-SA-3.0",
    },
    Package {
        name: "supertuxkart-data",
        dataset: "stk",
        audio_root: "usr/share/games/supertuxkart/data/sfx",
        zip: None,
        exclude: &[],
        table: include_str!("../corpus/stk.csv"),
        licence: "see debian/copyright (per file)",
    },
];

/// Looks a package up by Debian name or dataset name.
pub fn package(name: &str) -> Option<&'static Package> {
    PACKAGES
        .iter()
        .find(|p| p.name == name || p.dataset == name)
}

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

/// One clip of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Clip {
    pub dataset: String,
    /// Absolute path of the audio file.
    pub path: PathBuf,
    /// Path relative to the dataset's root (as in the reviewed table).
    pub rel_path: String,
    pub native_label: String,
    /// The UCS CatID, where the source gives one.
    pub ucs_catid: Option<String>,
    pub licence: String,
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
    /// Table paths not found under the root.
    pub missing: Vec<String>,
    /// Audio files under the root that no table row labels (dropped in review or never mapped).
    pub unlabelled: usize,
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
}

/// What `corpus fetch` does.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub cache: PathBuf,
    /// Packages (Debian or dataset names); empty = all six unless only other sources are given.
    pub packages: Vec<String>,
    /// Folder holding already unpacked packages, one sub-folder per Debian package name
    /// (`DIR/<package>/usr/...`); nothing is downloaded then.
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

fn log(msg: impl AsRef<str>) {
    eprintln!("{}", msg.as_ref());
}

/// Fetches every requested source and writes `corpus.json` and `ATTRIBUTION` into the cache.
pub fn fetch(opts: &FetchOptions) -> Result<CorpusIndex> {
    let cache = &opts.cache;
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let mut pkgs: Vec<&Package> = Vec::new();
    if opts.packages.is_empty() {
        if opts.ucs_dirs.is_empty() && opts.csvs.is_empty() {
            match &opts.from_dir {
                Some(dir) => pkgs.extend(PACKAGES.iter().filter(|p| dir.join(p.name).is_dir())),
                None => pkgs.extend(PACKAGES.iter()),
            }
        }
    } else {
        for name in &opts.packages {
            let p = package(name).with_context(|| {
                format!(
                    "unknown package {name}: one of {}",
                    PACKAGES
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if !pkgs.iter().any(|q| q.name == p.name) {
                pkgs.push(p);
            }
        }
    }
    let mut index = CorpusIndex::default();
    let mut attribution = String::new();
    writeln!(
        attribution,
        "sfxtag training corpus — attribution\n\nGenerated by `sfxtag-train corpus fetch`. Each dataset below lists its source, version,\nthe licences and copyright lines that apply to the files used, and the files themselves.\nThe full licence texts are in each package's usr/share/doc/<package>/copyright.\n"
    )?;
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
            None => {
                let deb = download_deb(&cache.join("debs"), p.name)?;
                let version = deb_version(&deb).unwrap_or_else(|_| "unknown".into());
                let dest = cache.join("unpacked").join(p.name);
                unpack_deb(&deb, &dest)?;
                (dest, version)
            }
        };
        let root = match p.zip {
            Some(zip) => {
                let zip_path = unpacked.join(zip);
                let dest = cache.join("unpacked").join(p.name).join("_zip");
                if dest.join(".extracted").exists() {
                    dest.join(p.audio_root)
                } else if unpacked.join(p.audio_root).is_dir() {
                    unpacked.join(p.audio_root)
                } else {
                    extract_zip_dir(
                        &zip_path,
                        &dest,
                        &format!("{}/", p.audio_root),
                        &p.exclude
                            .iter()
                            .map(|e| format!("{}/{e}", p.audio_root))
                            .collect::<Vec<_>>(),
                    )?;
                    dest.join(p.audio_root)
                }
            }
            None => unpacked.join(p.audio_root),
        };
        if !root.is_dir() {
            bail!(
                "{}: the audio root {} does not exist (DESIGN §7)",
                p.name,
                root.display()
            );
        }
        let table = parse_table(p.table, &format!("train/corpus/{}.csv", p.dataset))?;
        let copyright = find_copyright(&unpacked, p.name);
        let (info, clips, attr) =
            package_dataset(p, &root, &version, &table, copyright.as_deref())?;
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
        attribution.push_str(&user_attribution(&info, &clips));
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
        attribution.push_str(&user_attribution(&info, &clips));
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

/// `apt-get download` into `debs` unless a `.deb` of the package is already there.
pub fn download_deb(debs: &Path, pkg: &str) -> Result<PathBuf> {
    fs::create_dir_all(debs)?;
    if let Some(d) = find_deb(debs, pkg)? {
        log(format!("{pkg}: using {}", d.display()));
        return Ok(d);
    }
    log(format!("{pkg}: apt-get download …"));
    let t0 = std::time::Instant::now();
    let status = Command::new("apt-get")
        .arg("download")
        .arg(pkg)
        .current_dir(debs)
        .status()
        .context("cannot run apt-get (Debian/Ubuntu only; use --from-dir for unpacked folders)")?;
    if !status.success() {
        bail!(
            "apt-get download {pkg} failed ({status}); is the package in the configured archive?"
        );
    }
    let d = find_deb(debs, pkg)?
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let mb = fs::metadata(&d).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    log(format!(
        "{pkg}: downloaded {mb:.0} MB in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(d)
}

fn find_deb(debs: &Path, pkg: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{pkg}_");
    let mut found = None;
    for e in fs::read_dir(debs)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with(&prefix) && n.ends_with(".deb") {
            found = Some(e.path());
        }
    }
    Ok(found)
}

fn deb_version(deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Version")
        .output()?;
    if !out.status.success() {
        bail!("dpkg-deb -f failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `dpkg -x deb dest`, skipped when a previous run finished (marker file).
pub fn unpack_deb(deb: &Path, dest: &Path) -> Result<()> {
    let marker = dest.join(".unpacked");
    if marker.exists() {
        return Ok(());
    }
    fs::create_dir_all(dest)?;
    let t0 = std::time::Instant::now();
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .status()
        .context("cannot run dpkg")?;
    if !status.success() {
        bail!(
            "dpkg -x {} {} failed ({status})",
            deb.display(),
            dest.display()
        );
    }
    fs::write(&marker, deb.display().to_string())?;
    log(format!(
        "{}: unpacked in {:.1} s",
        deb.display(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Extracts the files of `zip` under `prefix` (but not under any of `exclude`) into `dest`,
/// keeping their paths; writes a marker when done.
pub fn extract_zip_dir(zip: &Path, dest: &Path, prefix: &str, exclude: &[String]) -> Result<usize> {
    let t0 = std::time::Instant::now();
    let f = fs::File::open(zip).with_context(|| format!("cannot open {}", zip.display()))?;
    let mut ar = zip::ZipArchive::new(std::io::BufReader::new(f))
        .with_context(|| format!("{} is not a zip archive", zip.display()))?;
    let mut n = 0;
    for i in 0..ar.len() {
        let mut entry = ar.by_index(i)?;
        let name = entry.name().to_string();
        if !name.starts_with(prefix)
            || exclude.iter().any(|e| name.starts_with(e.as_str()))
            || entry.is_dir()
        {
            continue;
        }
        let Some(rel) = entry.enclosed_name().map(Path::to_path_buf) else {
            continue;
        };
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut w = fs::File::create(&out)?;
        std::io::copy(&mut entry, &mut w)?;
        n += 1;
    }
    fs::write(
        dest.join(".extracted"),
        format!("{n} files from {}", zip.display()),
    )?;
    log(format!(
        "{}: extracted {n} files under {prefix} in {:.1} s",
        zip.display(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(n)
}

fn find_copyright(unpacked: &Path, pkg: &str) -> Option<String> {
    let doc = unpacked.join("usr/share/doc");
    let direct = doc.join(pkg).join("copyright");
    if let Ok(t) = fs::read_to_string(&direct) {
        return Some(t);
    }
    // Some packages share another package's doc folder (a symlink that dpkg -x leaves dangling).
    let entries = fs::read_dir(&doc).ok()?;
    for e in entries.flatten() {
        if let Ok(t) = fs::read_to_string(e.path().join("copyright")) {
            return Some(t);
        }
    }
    None
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
            } else if is_audio(&p) {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_audio(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| AUDIO_EXTS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Builds one package dataset: table rows checked against the files under `root`.
/// Returns the dataset, its clips and its attribution section.
pub fn package_dataset(
    p: &Package,
    root: &Path,
    version: &str,
    table: &[TableRow],
    copyright: Option<&str>,
) -> Result<(DatasetInfo, Vec<Clip>, String)> {
    let files: BTreeSet<String> = walk_audio(root)?
        .into_iter()
        .filter(|f| !p.exclude.iter().any(|e| f.starts_with(e)))
        .collect();
    let stanzas = copyright.map(parse_dep5).unwrap_or_default();
    let mut clips = Vec::new();
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    let mut copyright_lines: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in table {
        if !files.contains(&row.path) {
            missing.push(row.path.clone());
            continue;
        }
        used.insert(row.path.clone());
        let full = root.join(&row.path);
        let installed = full.to_string_lossy().replace('\\', "/");
        let (licence, holders) = match licence_for(&stanzas, &installed) {
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
        });
    }
    let licences: Vec<String> = clips
        .iter()
        .map(|c| c.licence.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let info = DatasetInfo {
        name: p.dataset.to_string(),
        source: format!("debian:{}", p.name),
        version: version.to_string(),
        licences: licences.clone(),
        root: root.to_path_buf(),
        clips: clips.len(),
        ucs_labels: true,
        missing,
        unlabelled: files.len() - used.len(),
    };
    let mut attr = String::new();
    writeln!(
        attr,
        "=============================================================================="
    )?;
    writeln!(
        attr,
        "Dataset {} — Debian package {} {}",
        p.dataset, p.name, version
    )?;
    writeln!(attr, "Audio root: {}", p.audio_root)?;
    if let Some(z) = p.zip {
        writeln!(attr, "  (inside {z})")?;
    }
    writeln!(attr, "Copyright file: usr/share/doc/{}/copyright", p.name)?;
    if stanzas.is_empty() {
        writeln!(
            attr,
            "  (not machine-readable: licence per DESIGN §7; its copyright lines follow)"
        )?;
        let mut seen = BTreeSet::new();
        for line in copyright.unwrap_or("").lines() {
            let t = line.trim();
            let l = t.to_ascii_lowercase();
            if (l.starts_with("copyright") || l.contains("(c)"))
                && t.len() > 12
                && seen.insert(t.to_string())
            {
                writeln!(attr, "  {t}")?;
            }
        }
    }
    for (lic, holders) in &copyright_lines {
        let n = clips.iter().filter(|c| &c.licence == lic).count();
        writeln!(attr, "License: {lic} ({n} files)")?;
        for h in holders {
            writeln!(attr, "  Copyright: {h}")?;
        }
    }
    writeln!(attr, "Files used ({}):", clips.len())?;
    for c in &clips {
        writeln!(attr, "  {}  [{}]", c.rel_path, c.licence)?;
    }
    writeln!(attr)?;
    Ok((info, clips, attr))
}

fn user_attribution(info: &DatasetInfo, clips: &[Clip]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "=============================================================================="
    );
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

/// A folder of UCS-named files: the CatID (from the name) is both the native and the UCS label.
/// Names that are not UCS names, or carry an archived CatID, are an error listing them.
pub fn ucs_dir_dataset(name: &str, dir: &Path, licence: &str) -> Result<(DatasetInfo, Vec<Clip>)> {
    if !dir.is_dir() {
        bail!("--ucs-dir {}: not a folder", dir.display());
    }
    let mut clips = Vec::new();
    let mut bad = Vec::new();
    for rel in walk_audio(dir)? {
        let file = rel.rsplit('/').next().unwrap_or(&rel);
        match ucs::parse_name(file) {
            Ok(n) if n.cat_id.is_label() => clips.push(Clip {
                dataset: name.to_string(),
                path: dir.join(&rel),
                rel_path: rel.clone(),
                native_label: n.cat_id.cat_id.to_string(),
                ucs_catid: Some(n.cat_id.cat_id.to_string()),
                licence: licence.to_string(),
            }),
            Ok(n) => bad.push(format!(
                "{rel}: {}",
                ucs::UcsError::ArchivedLabel(n.cat_id.cat_id.to_string())
            )),
            Err(e) => bad.push(format!("{rel}: {e}")),
        }
    }
    if !bad.is_empty() {
        bail!(
            "--ucs-dir {}: {} file(s) are not labelled by a usable UCS CatID (a UCS folder needs every name to start with one):\n  {}",
            dir.display(),
            bad.len(),
            bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    if clips.is_empty() {
        bail!(
            "--ucs-dir {}: no audio files ({})",
            dir.display(),
            AUDIO_EXTS.join(", ")
        );
    }
    let info = DatasetInfo {
        name: name.to_string(),
        source: format!("ucs-dir:{}", dir.display()),
        version: String::new(),
        licences: vec![licence.to_string()],
        root: dir.to_path_buf(),
        clips: clips.len(),
        ucs_labels: true,
        missing: Vec::new(),
        unlabelled: 0,
    };
    Ok((info, clips))
}

/// A CSV list `path,label` (header required; paths relative to the CSV's folder or absolute).
/// A label that is a UCS CatID is also recorded as the clip's CatID; an optional `ucs_catid`
/// column gives it explicitly (and must then be valid).
pub fn csv_dataset(name: &str, file: &Path, licence: &str) -> Result<(DatasetInfo, Vec<Clip>)> {
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut rdr =
        csv::Reader::from_path(file).with_context(|| format!("cannot read {}", file.display()))?;
    let headers: Vec<String> = rdr
        .headers()?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(pc), Some(lc)) = (col("path"), col("label")) else {
        bail!(
            "{}: the header must name the columns `path` and `label` (found `{}`)",
            file.display(),
            headers.join(",")
        );
    };
    let uc = col("ucs_catid");
    let mut clips = Vec::new();
    let mut missing = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}: bad CSV row", file.display(), i + 2))?;
        let path = rec.get(pc).unwrap_or("").trim();
        let label = rec.get(lc).unwrap_or("").trim();
        if path.is_empty() || label.is_empty() {
            bail!("{}:{}: empty path or label", file.display(), i + 2);
        }
        let ucs_catid = match uc
            .map(|c| rec.get(c).unwrap_or("").trim())
            .filter(|s| !s.is_empty())
        {
            Some(c) => Some(
                check_label_cat_id(c)
                    .with_context(|| format!("{}:{}", file.display(), i + 2))?
                    .cat_id
                    .to_string(),
            ),
            None => check_label_cat_id(label).ok().map(|e| e.cat_id.to_string()),
        };
        let full = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            base.join(path)
        };
        if !full.exists() {
            missing.push(path.to_string());
        }
        clips.push(Clip {
            dataset: name.to_string(),
            path: full,
            rel_path: path.to_string(),
            native_label: label.to_string(),
            ucs_catid,
            licence: licence.to_string(),
        });
    }
    if clips.is_empty() {
        bail!("{}: no rows", file.display());
    }
    let info = DatasetInfo {
        name: name.to_string(),
        source: format!("csv:{}", file.display()),
        version: String::new(),
        licences: vec![licence.to_string()],
        root: base,
        clips: clips.len(),
        ucs_labels: clips.iter().all(|c| c.ucs_catid.is_some()),
        missing,
        unlabelled: 0,
    };
    Ok((info, clips))
}
