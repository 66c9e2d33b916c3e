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
