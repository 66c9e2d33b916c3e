//! `sfxtag classify FILES…`: per-window and per-file labels as a table, JSON or CSV, and
//! optionally a UCS file name suggestion.

use super::{display_name, load_model, process_file};
use crate::classify::{FileLabels, Label, TopSource};
use crate::cli::{ClassifyArgs, TableFormat};
use crate::payload::TopEntry;
use crate::pipeline::Processor;
use anyhow::Result;
use serde::Serialize;
use sfxtag_core::ucs;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Serialize)]
struct WindowRow {
    window: u64,
    start_s: f64,
    end_s: f64,
    level_dbfs: f32,
    top: Vec<TopEntry>,
    /// `top[0]` passes its threshold.
    confident: bool,
    /// Below the silence floor: not classified.
    silence: bool,
}

#[derive(Serialize)]
struct FileResult {
    file: String,
    duration_s: f64,
    windows: Vec<WindowRow>,
    /// Mean of the classified windows' scores, top-k.
    top: Vec<TopEntry>,
    top_source: TopSource,
    /// `top[0]` passes its threshold; false: "unknown", `top` holds the best guesses.
    confident: bool,
    /// Every window was below the silence floor.
    silence: bool,
    /// The file holds less audio than its header promises (processed as far as it goes).
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_name: Option<String>,
}

/// The one-line verdict of a file in the table.
fn verdict(r: &FileResult, silence_floor: f32) -> String {
    let short = |t: &TopEntry| t.catid.clone().unwrap_or_else(|| t.label.clone());
    if r.silence {
        return format!("silence (every window below {silence_floor} dBFS)");
    }
    let Some(best) = r.top.first() else {
        return "(no labels)".into();
    };
    if !r.confident {
        return format!(
            "—  no confident label (best: {} {:.2})",
            short(best),
            best.score
        );
    }
    let others: Vec<String> = r
        .top
        .iter()
        .skip(1)
        .map(|t| format!("{} {:.2}", short(t), t.score))
        .collect();
    format!(
        "{:<10} {:.2}  {}{}",
        short(best),
        best.score,
        match (&best.category, &best.subcategory) {
            (Some(c), Some(s)) => format!("{c} / {s}"),
            (Some(c), None) => c.clone(),
            _ => String::new(),
        },
        if others.is_empty() {
            String::new()
        } else {
            format!("   (then {})", others.join(", "))
        }
    )
}

#[derive(Serialize)]
struct FileError {
    file: String,
    error: String,
}

/// `CatID_FXName_CreatorID_SourceID.ext` for the top label: its CatID, else (a Category label)
/// the Category's unspecified `…Misc` CatID; none for a custom taxonomy.
pub fn suggest_name(path: &Path, top: &[Label], creator: &str, source: &str) -> Option<String> {
    let entry = top
        .iter()
        .find_map(|l| l.catid.as_deref().and_then(ucs::lookup))
        .or_else(|| {
            top.iter()
                .find_map(|l| l.category.as_deref().and_then(ucs::misc_of))
        })?;
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    // Keep the FX name of an already UCS-named file; else the file's stem.
    let fx = match ucs::parse_name(&stem) {
        Ok(n) => n.fx_name.unwrap_or_else(|| stem.clone()),
        Err(_) => stem.clone(),
    };
    let mut name = ucs::format_name(entry, &fx, creator, source);
    if let Some(ext) = path.extension() {
        name.push('.');
        name.push_str(&ext.to_string_lossy());
    }
    Some(name)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    let mut model = load_model(&args.model, 3)?;
    if !model.classifier.can_label() {
        eprintln!("sfxtag: warning: {}", model.classifier.describe());
    }
    // Labels each file and window keeps; batch adaptation needs every head label of a file.
    let keep = model.classifier.top_k;
    if args.batch_priors {
        match &model.classifier.head {
            Some(h) => model.classifier.top_k = keep.max(h.labels.len()),
            None => eprintln!(
                "sfxtag: warning: --batch-priors: the model has no labelled head; files keep their own scores"
            ),
        }
    }
    let mut p = Processor::with_silence_floor(model, Some(args.silence_floor));
    let mut results = Vec::new();
    // Per classified file (as `results`): its labels and its path.
    let mut labels: Vec<FileLabels> = Vec::new();
    let mut paths: Vec<&Path> = Vec::new();
    let mut errors = Vec::new();
    for path in &args.files {
        let mut windows: Vec<WindowRow> = Vec::new();
        let mut preds: Vec<(Vec<Label>, TopSource)> = Vec::new();
        let mut silent = 0usize;
        match process_file(&mut p, path, &mut |w| {
            if w.silent {
                silent += 1;
            } else {
                preds.push((w.prediction.top.clone(), w.prediction.top_source));
            }
            windows.push(WindowRow {
                window: w.seq,
                start_s: (w.start_s * 1000.0).round() / 1000.0,
                end_s: (w.end_s * 1000.0).round() / 1000.0,
                level_dbfs: (w.level_dbfs * 10.0).round() / 10.0,
                top: w.prediction.top.iter().take(keep).map(Into::into).collect(),
                confident: w.prediction.confident,
                silence: w.silent,
            })
        }) {
            Ok(info) => {
                let f: FileLabels = p.model.classifier.file_labels(&preds, silent);
                let first = windows.first().map(|w| w.window).unwrap_or(0);
                for w in windows.iter_mut() {
                    w.window -= first;
                }
                results.push(FileResult {
                    file: display_name(path),
                    duration_s: (info.duration_s * 1000.0).round() / 1000.0,
                    windows,
                    suggested_name: None,
                    top: Vec::new(),
                    top_source: f.top_source,
                    confident: false,
                    silence: f.silent,
                    warning: info.truncation.map(|t| t.to_string()),
                });
                labels.push(f);
                paths.push(path);
            }
            Err(e) => {
                eprintln!("sfxtag: {e:#}");
                errors.push(FileError {
                    file: display_name(path),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    // The files as one batch: their own mix of Categories (decides confidence again too).
    let batch_priors = if args.batch_priors {
        p.model
            .classifier
            .adapt_batch(&mut labels, args.batch_prior_strength, keep)
    } else {
        None
    };
    if let Some(mix) = &batch_priors {
        let shown: Vec<String> = mix
            .iter()
            .take(5)
            .map(|(l, s)| format!("{l} {s:.2}"))
            .collect();
        eprintln!(
            "sfxtag: batch of {} files, estimated mix: {}",
            labels.len(),
            shown.join(", ")
        );
    }
    for ((r, f), path) in results.iter_mut().zip(&labels).zip(paths) {
        r.top = f.top.iter().map(Into::into).collect();
        r.confident = f.confident;
        r.suggested_name = args
            .suggest_name
            .then(|| suggest_name(path, &f.top, &args.creator, &args.source))
            .flatten();
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            #[derive(Serialize)]
            struct All<'a> {
                model: &'a str,
                files: &'a [FileResult],
                errors: &'a [FileError],
                /// With --batch-priors: the batch's estimated mix, label → share.
                #[serde(skip_serializing_if = "Option::is_none")]
                batch_priors: Option<BTreeMap<&'a str, f32>>,
            }
            serde_json::to_writer_pretty(
                &mut out,
                &All {
                    model: &p.model.name,
                    files: &results,
                    errors: &errors,
                    batch_priors: batch_priors
                        .as_ref()
                        .map(|m| m.iter().map(|(l, s)| (l.as_str(), *s)).collect()),
                },
            )?;
            writeln!(out)?;
        }
        TableFormat::Csv => {
            writeln!(
                out,
                "file,window,start_s,end_s,rank,catid,category,subcategory,label,score,confident"
            )?;
            for r in &results {
                let rows = |w: &str,
                            s: f64,
                            e: f64,
                            top: &[TopEntry],
                            confident: bool,
                            out: &mut dyn Write|
                 -> std::io::Result<()> {
                    for (rank, t) in top.iter().enumerate() {
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{},{},{},{:.4},{}",
                            csv_field(&r.file),
                            w,
                            s,
                            e,
                            rank + 1,
                            t.catid.as_deref().unwrap_or(""),
                            t.category.as_deref().unwrap_or(""),
                            t.subcategory.as_deref().unwrap_or(""),
                            csv_field(&t.label),
                            t.score,
                            rank == 0 && confident
                        )?;
                    }
                    Ok(())
                };
                rows("all", 0.0, r.duration_s, &r.top, r.confident, &mut out)?;
                if args.per_window {
                    for w in &r.windows {
                        let id = w.window.to_string();
                        rows(&id, w.start_s, w.end_s, &w.top, w.confident, &mut out)?;
                    }
                }
            }
        }
        TableFormat::Table => {
            for r in &results {
                writeln!(
                    out,
                    "{}  [{:.1} s, {} windows]\n  {}",
                    r.file,
                    r.duration_s,
                    r.windows.len(),
                    verdict(r, args.silence_floor)
                )?;
                if let Some(w) = &r.warning {
                    writeln!(out, "  warning: {w}")?;
                }
                if let Some(n) = &r.suggested_name {
                    writeln!(out, "  suggested name: {n}")?;
                }
                if args.per_window {
                    for w in &r.windows {
                        let labels: Vec<String> = if w.silence {
                            vec!["silence".into()]
                        } else {
                            w.top
                                .iter()
                                .map(|t| {
                                    format!(
                                        "{} {:.2}",
                                        t.catid.as_deref().unwrap_or(&t.label),
                                        t.score
                                    )
                                })
                                .collect()
                        };
                        writeln!(
                            out,
                            "    {:>3} {:>7.2}–{:<7.2}s {:>6.1} dBFS {} {}",
                            w.window,
                            w.start_s,
                            w.end_s,
                            w.level_dbfs,
                            if w.confident { "✓" } else { "?" },
                            labels.join("  ")
                        )?;
                    }
                }
            }
        }
    }
    out.flush()?;
    if !errors.is_empty() {
        anyhow::bail!(
            "{} of {} files could not be classified",
            errors.len(),
            args.files.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfxtag_core::manifest::Taxonomy;

    #[test]
    fn suggested_names_are_ucs_names() {
        let top = vec![Label::new("DOORWood", Taxonomy::UcsCatId, 0.9)];
        let n = suggest_name(Path::new("dir/old_take 3.wav"), &top, "JD", "LIB").unwrap();
        assert_eq!(n, "DOORWood_old take 3_JD_LIB.wav");
        let parsed = ucs::parse_name(&n).unwrap();
        assert_eq!(parsed.cat_id.cat_id, "DOORWood");
        // A UCS-named file keeps its FX name.
        let n = suggest_name(Path::new("ANMLFarm_Sheep 7_BSB.ogg"), &top, "JD", "LIB").unwrap();
        assert_eq!(n, "DOORWood_Sheep 7_JD_LIB.ogg");
        // A Category label: its …Misc CatID; a custom label: no suggestion.
        let cat = vec![Label::new("DOORS", Taxonomy::UcsCategory, 0.9)];
        let n = suggest_name(Path::new("a.wav"), &cat, "JD", "LIB").unwrap();
        assert!(n.starts_with("DOORMisc_"), "{n}");
        let custom = vec![Label::new("bark", Taxonomy::Custom, 0.9)];
        assert!(suggest_name(Path::new("a.wav"), &custom, "JD", "LIB").is_none());
    }
}
