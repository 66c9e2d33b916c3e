//! `sfxtag tag FILES…`: analyse recordings made elsewhere and write the same tags the recorder
//! writes (bext + iXML), as tagged copies (default), in place (with a backup), and/or under UCS
//! names. Every file is written under a temporary name and moved into place when complete.

use super::{display_name, load_model, UsageError};
use crate::classify::{aggregate, Label};
use crate::cli::{TagArgs, TagFormat};
use crate::pipeline::Processor;
use crate::record::bwf::{self, ClipWriter, SampleFormat};
use crate::record::tagging::{tag_clip, TagSettings, Tagging};
use anyhow::{bail, Context, Result};
use sfxtag_core::audio;
use sfxtag_core::ucs;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

struct Planned {
    src: PathBuf,
    dest: PathBuf,
    backup: Option<PathBuf>,
    tagging: Tagging,
    labels: Vec<Label>,
}

fn is_wav(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("wave"))
}

fn backup_path(src: &Path) -> PathBuf {
    let mut s = src.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

/// Labels of one file: the mean of its window scores, best first. The decoded audio is not kept:
/// the write phase decodes each file again, so a long batch never holds every file in memory.
fn analyse(p: &mut Processor, path: &Path) -> Result<Vec<Label>> {
    let native =
        audio::decode_native(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mono = audio::downmix(&native.interleaved, native.channels)
        .and_then(|m| audio::resample_to_44k(&m, native.rate))
        .with_context(|| format!("cannot resample {}", path.display()))?;
    let mut windows: Vec<Vec<Label>> = Vec::new();
    p.restart_at(0.0);
    p.push(&mono, &mut |w| windows.push(w.prediction.top.clone()))?;
    p.finish(&mut |w| windows.push(w.prediction.top.clone()))?;
    let k = p.model.classifier.top_k;
    Ok(aggregate(&windows, k))
}

pub fn run(args: TagArgs) -> Result<()> {
    let model = load_model(&args.model, 3)?;
    if !model.classifier.can_label() {
        return Err(UsageError(format!(
            "cannot tag: {} (give --refs from `sfxtag enroll`, or a model with a head)",
            model.classifier.describe()
        ))
        .into());
    }
    for (flag, v) in [("--creator", &args.creator), ("--source", &args.source)] {
        if ucs::sanitize_block(v).is_empty() {
            return Err(UsageError(format!("{flag} must not be empty (a UCS name block)")).into());
        }
    }
    if args.in_place {
        if let Some(f) = args.files.iter().find(|f| !is_wav(f)) {
            return Err(UsageError(format!(
                "{} is not a WAV file: --in-place only rewrites WAV files; use --out DIR for tagged WAV copies",
                f.display()
            ))
            .into());
        }
    }
    let settings = TagSettings {
        creator_id: args.creator.clone(),
        source_id: args.source.clone(),
        designer: args.designer.clone(),
        library: args.library.clone(),
        location: args.location.clone(),
        ..TagSettings::default()
    };
    let out_dir = (!args.in_place).then(|| args.out.clone().unwrap_or_else(|| "tagged".into()));
    let model_name = model.name.clone();
    let mut p = Processor::new(model);

    // 1. Analyse and plan.
    let mut plans = Vec::new();
    let mut failures = 0usize;
    let mut taken: HashSet<PathBuf> = HashSet::new();
    let n = args.files.len();
    for (i, src) in args.files.iter().enumerate() {
        eprint!("[{}/{n}] {} … ", i + 1, display_name(src));
        let plan = analyse(&mut p, src).and_then(|labels| {
            let stem = src
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // An already UCS-named file keeps its FX name; else the stem is the FX name.
            let fx = match ucs::parse_name(&stem) {
                Ok(n) => n.fx_name.unwrap_or(stem.clone()),
                Err(_) => stem.clone(),
            };
            let mtime = std::fs::metadata(src).and_then(|m| m.modified()).ok();
            let reference = format!(
                "SFXTAG{}",
                mtime
                    .unwrap_or(SystemTime::UNIX_EPOCH)
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            );
            let tagging = tag_clip(&labels, &settings, &model_name, mtime, &reference, Some(&fx));
            let dir = match &out_dir {
                Some(d) => d.clone(),
                None => src.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let mut tagging = tagging;
            let dest = if args.rename {
                let k = (1..10_000)
                    .find(|&k| {
                        let d = dir.join(format!("{}.wav", tagging.name(k)));
                        !taken.contains(&d) && (!d.exists() || &d == src)
                    })
                    .context("no free file name")?;
                // The FX name carries the number too, so iXML and file name agree.
                tagging = tagging.numbered(k);
                dir.join(format!("{}.wav", tagging.name(1)))
            } else if args.in_place {
                src.clone()
            } else {
                dir.join(format!("{stem}.wav"))
            };
            if !args.in_place && same_file(&dest, src) {
                bail!(
                    "{} would overwrite its source; use --in-place, or another --out",
                    dest.display()
                );
            }
            if !args.in_place && dest.exists() && !args.rename {
                bail!(
                    "{} exists; remove it or choose another --out (nothing is overwritten)",
                    dest.display()
                );
            }
            if taken.contains(&dest) {
                bail!("two inputs would both be written to {}", dest.display());
            }
            let backup = args.in_place.then(|| backup_path(src));
            if let Some(b) = &backup {
                if b.exists() {
                    bail!(
                        "the backup {} exists already; move it away first (it may hold an earlier original)",
                        b.display()
                    );
                }
            }
            taken.insert(dest.clone());
            Ok(Planned {
                src: src.clone(),
                dest,
                backup,
                tagging,
                labels,
            })
        });
        match plan {
            Ok(pl) => {
                eprintln!(
                    "{}",
                    pl.labels
                        .first()
                        .map(|l| format!("{} {:.2}", l.short(), l.score))
                        .unwrap_or_else(|| "(no label)".into())
                );
                plans.push(pl);
            }
            Err(e) => {
                eprintln!("failed");
                eprintln!("sfxtag: {e:#}");
                failures += 1;
            }
        }
    }

    // 2. The listing (always for a dry run; first for an in-place rename).
    let confirm_needed = args.in_place && args.rename && !args.yes;
    if args.dry_run || confirm_needed {
        for pl in &plans {
            println!(
                "{} → {}  [{}]",
                display_name(&pl.src),
                display_name(&pl.dest),
                pl.tagging.meta.description
            );
        }
        if confirm_needed && !args.dry_run {
            eprintln!("sfxtag: nothing changed yet; re-run with --yes to rename and tag these files in place");
        }
        return finish(failures, n);
    }

    // 3. Write.
    for pl in &plans {
        match write_one(pl, args.sample_format) {
            Ok(()) => println!("{}", display_name(&pl.dest)),
            Err(e) => {
                eprintln!("sfxtag: {}: {e:#}", display_name(&pl.src));
                failures += 1;
            }
        }
    }
    finish(failures, n)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn finish(failures: usize, n: usize) -> Result<()> {
    if failures > 0 {
        bail!("{failures} of {n} files could not be tagged");
    }
    Ok(())
}

fn write_one(pl: &Planned, format: TagFormat) -> Result<()> {
    let native = audio::decode_native(&pl.src)
        .with_context(|| format!("cannot read {}", pl.src.display()))?;
    let format = match format {
        TagFormat::Keep => SampleFormat::keeping(native.bits_per_sample, native.float),
        TagFormat::Pcm16 => SampleFormat::Pcm16,
        TagFormat::Pcm24 => SampleFormat::Pcm24,
        TagFormat::Float32 => SampleFormat::Float32,
    };
    let dir = pl
        .dest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut w = ClipWriter::create(
        &dir,
        &format!("tag-{stamp}"),
        format,
        native.rate,
        native.channels,
        &pl.tagging.meta,
    )?;
    for chunk in native.interleaved.chunks(65_536 * native.channels) {
        w.write(chunk)?;
    }
    let part = w.finish(&pl.tagging.meta)?;
    if let Some(b) = &pl.backup {
        // Keep the original under FILE.bak before anything replaces or removes it.
        if std::fs::hard_link(&pl.src, b).is_err() {
            std::fs::copy(&pl.src, b).with_context(|| {
                format!("cannot back up {} to {}", pl.src.display(), b.display())
            })?;
        }
    }
    if pl.dest == pl.src {
        // In place: an atomic replace; the original stays reachable as the backup.
        std::fs::rename(&part, &pl.dest)
            .with_context(|| format!("cannot replace {}", pl.dest.display()))?;
    } else {
        if pl.dest.exists() {
            std::fs::remove_file(&part).ok();
            bail!(
                "{} appeared while tagging; not overwritten",
                pl.dest.display()
            );
        }
        std::fs::rename(&part, &pl.dest)
            .with_context(|| format!("cannot write {}", pl.dest.display()))?;
        if pl.backup.is_some() {
            // In-place rename: the original lives on as the backup.
            std::fs::remove_file(&pl.src).ok();
        }
    }
    bwf::sync_dir(&dir);
    Ok(())
}
