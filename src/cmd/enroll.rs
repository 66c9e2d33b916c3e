//! `sfxtag enroll`: add z-scored window embeddings with a label to a reference file (created,
//! or extended when it exists and fits the model and taxonomy).

use super::{display_name, load_model, process_file, UsageError};
use crate::cli::{EnrollArgs, ModelArgs};
use crate::pipeline::Processor;
use crate::refs::{parse_taxonomy, taxonomy_name, RefSet, RefsError};
use anyhow::{Context, Result};
use sfxtag_core::ucs;

pub fn run(args: EnrollArgs) -> Result<()> {
    let taxonomy = parse_taxonomy(&args.taxonomy).ok_or_else(|| {
        UsageError(format!(
            "--taxonomy '{}' is not one of ucs-catid, ucs-category, custom",
            args.taxonomy
        ))
    })?;
    // References never come from another reference set.
    let model_args = ModelArgs {
        refs: None,
        ..args.model.clone()
    };
    let model = load_model(&model_args, 3)?;
    let m = &model.manifest;
    let mut set = if args.out.exists() {
        let s = RefSet::load(&args.out, &m.model.id, m.encoder.embedding_dim)
            .with_context(|| format!("cannot extend {}", args.out.display()))?;
        if s.taxonomy != taxonomy {
            return Err(RefsError::TaxonomyMismatch {
                path: args.out.display().to_string(),
                found: taxonomy_name(s.taxonomy).into(),
                expected: taxonomy_name(taxonomy).into(),
            }
            .into());
        }
        s
    } else {
        RefSet::new(
            &m.model.id,
            &m.model.version,
            taxonomy,
            m.encoder.embedding_dim,
        )
    };
    let before = set.len();
    if let Some(dir) = &args.ucs_library {
        return enroll_library(model, set, before, dir, &args);
    }
    // Labels first, so a bad one fails before any work.
    let mut labelled = Vec::new();
    if let Some(list) = &args.list {
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("cannot read --list {}", list.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line == "path,label") {
                continue;
            }
            let (path, label) = line.rsplit_once(',').ok_or_else(|| {
                UsageError(format!(
                    "{}:{}: expected `path,label`",
                    list.display(),
                    i + 1
                ))
            })?;
            set.check_label(label.trim())
                .map_err(|e| UsageError(format!("{}:{}: {e}", list.display(), i + 1)))?;
            labelled.push((
                std::path::PathBuf::from(path.trim()),
                label.trim().to_string(),
            ));
        }
    }
    for f in &args.files {
        let label = match &args.label {
            Some(l) => l.clone(),
            None => {
                let stem = f
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let parsed = ucs::parse_name(&stem).map_err(|e| {
                    UsageError(format!(
                        "{}: no --label given and the file name is not a UCS name ({e})",
                        f.display()
                    ))
                })?;
                match taxonomy {
                    sfxtag_core::manifest::Taxonomy::UcsCategory => {
                        parsed.cat_id.category.to_string()
                    }
                    _ => parsed.cat_id.cat_id.to_string(),
                }
            }
        };
        set.check_label(&label)
            .map_err(|e| UsageError(format!("{}: {e}", f.display())))?;
        labelled.push((f.clone(), label));
    }
    let mut p = Processor::new(model);
    for (f, label) in &labelled {
        let name = display_name(f);
        let mut first = None;
        let mut n = 0;
        process_file(&mut p, f, &mut |w| {
            let first = *first.get_or_insert(w.seq);
            set.add(label, &name, w.seq - first, w.z);
            n += 1;
        })?;
        eprintln!("{name}: {n} windows as {label}");
    }
    set.save(&args.out)?;
    if args.attach {
        attach(&args, taxonomy)?;
    }
    eprintln!(
        "{}: {} references ({} new), {} labels, taxonomy {}, model {}",
        args.out.display(),
        set.len(),
        set.len() - before,
        set.label_count(),
        taxonomy_name(set.taxonomy),
        set.model
    );
    Ok(())
}

/// What enrolling a library found, per UCS Category.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LibrarySummary {
    /// Category → (files enrolled now, windows enrolled now).
    pub added: std::collections::BTreeMap<String, (usize, usize)>,
    /// Files already in the set (skipped).
    pub already: usize,
    /// Audio files whose name is not a UCS name (skipped).
    pub not_ucs: Vec<String>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// The audio files under `dir`, sorted, as `(path, CatID)` for UCS-named ones and `Err(path)`
/// for the others.
pub fn library_files(
    dir: &std::path::Path,
) -> Result<Vec<Result<(std::path::PathBuf, String), std::path::PathBuf>>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                sfxtag_core::audio::AUDIO_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str())
            }) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match ucs::parse_name(&stem) {
                Ok(n) if n.cat_id.is_label() => Ok((p, n.cat_id.cat_id.to_string())),
                _ => Err(p),
            }
        })
        .collect())
}

/// `enroll --ucs-library DIR`: every UCS-named audio file under DIR not yet in the set.
fn enroll_library(
    model: crate::model::Model,
    mut set: RefSet,
    before: usize,
    dir: &std::path::Path,
    args: &EnrollArgs,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(UsageError(format!("--ucs-library {}: not a folder", dir.display())).into());
    }
    if set.taxonomy != sfxtag_core::manifest::Taxonomy::UcsCatId {
        return Err(UsageError(format!(
            "--ucs-library enrolls CatIDs: {} holds {} labels",
            args.out.display(),
            taxonomy_name(set.taxonomy)
        ))
        .into());
    }
    let mut summary = LibrarySummary::default();
    let mut todo = Vec::new();
    for f in library_files(dir)? {
        match f {
            Ok((path, catid)) => {
                if set.has_source(&display_name(&path)) {
                    summary.already += 1;
                } else {
                    todo.push((path, catid));
                }
            }
            Err(path) => summary.not_ucs.push(display_name(&path)),
        }
    }
    let pb = indicatif::ProgressBar::new(todo.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix("enrolling");
    let mut p = Processor::new(model);
    for (i, (path, catid)) in todo.iter().enumerate() {
        let name = display_name(path);
        pb.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let mut first = None;
        let mut n = 0;
        match process_file(&mut p, path, &mut |w| {
            let first = *first.get_or_insert(w.seq);
            set.add(catid, &name, w.seq - first, w.z);
            n += 1;
        }) {
            Ok(_) => {
                let cat = ucs::lookup(catid).map_or("?", |e| e.category).to_string();
                let e = summary.added.entry(cat).or_default();
                e.0 += 1;
                e.1 += n;
            }
            Err(e) => summary.unreadable.push((name, format!("{e:#}"))),
        }
        pb.inc(1);
        // Save every 50 files: an interrupted run keeps what it did (re-runs skip it).
        if (i + 1) % 50 == 0 {
            set.save(&args.out)?;
        }
    }
    pb.finish_and_clear();
    set.save(&args.out)?;
    eprint!("{}", library_report(&summary, &set, before, &args.out));
    if args.attach {
        attach(args, set.taxonomy)?;
    }
    Ok(())
}

/// The summary printed after enrolling a library.
pub fn library_report(
    s: &LibrarySummary,
    set: &RefSet,
    before: usize,
    out: &std::path::Path,
) -> String {
    use std::fmt::Write as _;
    let mut r = String::new();
    let files: usize = s.added.values().map(|x| x.0).sum();
    let _ = writeln!(r, "{:<18} {:>6} {:>8}", "Category", "files", "windows");
    for (cat, (f, w)) in &s.added {
        let _ = writeln!(r, "{cat:<18} {f:>6} {w:>8}");
    }
    let _ = writeln!(
        r,
        "{}: {files} new files ({} windows), {} already enrolled, {} without a UCS name skipped, {} unreadable; {} references in all",
        out.display(),
        set.len() - before,
        s.already,
        s.not_ucs.len(),
        s.unreadable.len(),
        set.len()
    );
    for n in s.not_ucs.iter().take(10) {
        let _ = writeln!(r, "  not a UCS name: {n}");
    }
    if s.not_ucs.len() > 10 {
        let _ = writeln!(r, "  … and {} more", s.not_ucs.len() - 10);
    }
    for (n, e) in &s.unreadable {
        let _ = writeln!(r, "  unreadable: {n}: {e}");
    }
    r
}

/// Names `args.out` in the model's manifest as its kNN reference set, with its sha256; the
/// manifest is replaced atomically (temp file + rename).
fn attach(args: &EnrollArgs, taxonomy: sfxtag_core::manifest::Taxonomy) -> Result<()> {
    use sfxtag_core::manifest::{sha256_hex, KnnSpec, Manifest, MANIFEST_FILE};
    let dir = crate::model::resolve(args.model.model.as_deref())?;
    let out = args.out.canonicalize()?;
    let file = match (out.parent(), out.file_name()) {
        (Some(p), Some(f)) if p == dir.canonicalize()? => f.to_string_lossy().into_owned(),
        _ => {
            return Err(UsageError(format!(
                "--attach: {} must lie in the model directory {}",
                args.out.display(),
                dir.display()
            ))
            .into())
        }
    };
    let mut m = Manifest::load(&dir)?;
    let k = m
        .knn
        .as_ref()
        .map(|k| k.k)
        .or(args.model.knn_k)
        .unwrap_or(5);
    m.knn = Some(KnnSpec {
        file: file.clone(),
        taxonomy,
        k,
    });
    m.files
        .insert(file.clone(), sha256_hex(&std::fs::read(&out)?));
    m.validate()?;
    let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp"));
    std::fs::write(&tmp, m.to_toml())?;
    std::fs::rename(&tmp, dir.join(MANIFEST_FILE))?;
    eprintln!(
        "{}: [knn] now names {file} (k = {k})",
        dir.join(MANIFEST_FILE).display()
    );
    Ok(())
}
