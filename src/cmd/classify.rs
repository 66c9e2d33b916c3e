//! `sfxtag classify FILES…`: per-window and per-file labels as a table, JSON or CSV, and
//! optionally a UCS file name suggestion.

use super::{display_name, load_model, process_file};
use crate::classify::{aggregate, Label, TopSource};
use crate::cli::{ClassifyArgs, TableFormat};
use crate::payload::TopEntry;
use crate::pipeline::Processor;
use anyhow::Result;
use serde::Serialize;
use sfxtag_core::ucs;
use std::io::Write;
use std::path::Path;

#[derive(Serialize)]
struct WindowRow {
    window: u64,
    start_s: f64,
    end_s: f64,
    level_dbfs: f32,
    top: Vec<TopEntry>,
}

#[derive(Serialize)]
struct FileResult {
    file: String,
    duration_s: f64,
    windows: Vec<WindowRow>,
    /// Mean of the per-window scores, top-k.
    top: Vec<TopEntry>,
    top_source: TopSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_name: Option<String>,
}

#[derive(Serialize)]
struct FileError {
    file: String,
    error: String,
}

/// `CatID_FXName_CreatorID_SourceID.ext` for the top label (UCS CatID taxonomy only).
pub fn suggest_name(path: &Path, top: &[Label], creator: &str, source: &str) -> Option<String> {
    let entry = top
        .iter()
        .find_map(|l| l.catid.as_deref().and_then(ucs::lookup))?;
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
    let model = load_model(&args.model, 3)?;
    let top_k = model.classifier.top_k;
    if !model.classifier.can_label() {
        eprintln!("sfxtag: warning: {}", model.classifier.describe());
    }
    let mut p = Processor::new(model);
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for path in &args.files {
        let mut windows: Vec<(WindowRow, Vec<Label>)> = Vec::new();
        let mut source = TopSource::None;
        match process_file(&mut p, path, &mut |w| {
            source = w.prediction.top_source;
            windows.push((
                WindowRow {
                    window: w.seq,
                    start_s: (w.start_s * 1000.0).round() / 1000.0,
                    end_s: (w.end_s * 1000.0).round() / 1000.0,
                    level_dbfs: (w.level_dbfs * 10.0).round() / 10.0,
                    top: w.prediction.top.iter().map(Into::into).collect(),
                },
                w.prediction.top.clone(),
            ))
        }) {
            Ok(info) => {
                let tops: Vec<Vec<Label>> = windows.iter().map(|w| w.1.clone()).collect();
                let agg = aggregate(&tops, top_k);
                let first = windows.first().map(|w| w.0.window).unwrap_or(0);
                results.push(FileResult {
                    file: display_name(path),
                    duration_s: (info.duration_s * 1000.0).round() / 1000.0,
                    windows: windows
                        .into_iter()
                        .map(|(mut w, _)| {
                            w.window -= first;
                            w
                        })
                        .collect(),
                    suggested_name: args
                        .suggest_name
                        .then(|| suggest_name(path, &agg, &args.creator, &args.source))
                        .flatten(),
                    top: agg.iter().map(Into::into).collect(),
                    top_source: source,
                });
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
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            #[derive(Serialize)]
            struct All<'a> {
                model: &'a str,
                files: &'a [FileResult],
                errors: &'a [FileError],
            }
            serde_json::to_writer_pretty(
                &mut out,
                &All {
                    model: &p.model.name,
                    files: &results,
                    errors: &errors,
                },
            )?;
            writeln!(out)?;
        }
        TableFormat::Csv => {
            writeln!(
                out,
                "file,window,start_s,end_s,rank,catid,category,subcategory,label,score"
            )?;
            for r in &results {
                let rows = |w: &str,
                            s: f64,
                            e: f64,
                            top: &[TopEntry],
                            out: &mut dyn Write|
                 -> std::io::Result<()> {
                    for (rank, t) in top.iter().enumerate() {
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{},{},{},{:.4}",
                            csv_field(&r.file),
                            w,
                            s,
                            e,
                            rank + 1,
                            t.catid.as_deref().unwrap_or(""),
                            t.category.as_deref().unwrap_or(""),
                            t.subcategory.as_deref().unwrap_or(""),
                            csv_field(&t.label),
                            t.score
                        )?;
                    }
                    Ok(())
                };
                rows("all", 0.0, r.duration_s, &r.top, &mut out)?;
                if args.per_window {
                    for w in &r.windows {
                        rows(&w.window.to_string(), w.start_s, w.end_s, &w.top, &mut out)?;
                    }
                }
            }
        }
        TableFormat::Table => {
            for r in &results {
                let best = r
                    .top
                    .first()
                    .map(|t| {
                        format!(
                            "{:<10} {:.2}  {}",
                            t.catid.as_deref().unwrap_or(&t.label),
                            t.score,
                            match (&t.category, &t.subcategory) {
                                (Some(c), Some(s)) => format!("{c} / {s}"),
                                (Some(c), None) => c.clone(),
                                _ => String::new(),
                            }
                        )
                    })
                    .unwrap_or_else(|| "(no labels)".into());
                let others: Vec<String> = r
                    .top
                    .iter()
                    .skip(1)
                    .map(|t| format!("{} {:.2}", t.catid.as_deref().unwrap_or(&t.label), t.score))
                    .collect();
                writeln!(
                    out,
                    "{}  [{:.1} s, {} windows]\n  {}{}",
                    r.file,
                    r.duration_s,
                    r.windows.len(),
                    best,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("   (then {})", others.join(", "))
                    }
                )?;
                if let Some(n) = &r.suggested_name {
                    writeln!(out, "  suggested name: {n}")?;
                }
                if args.per_window {
                    for w in &r.windows {
                        let labels: Vec<String> = w
                            .top
                            .iter()
                            .map(|t| {
                                format!("{} {:.2}", t.catid.as_deref().unwrap_or(&t.label), t.score)
                            })
                            .collect();
                        writeln!(
                            out,
                            "    {:>3} {:>7.2}–{:<7.2}s {:>6.1} dBFS  {}",
                            w.window,
                            w.start_s,
                            w.end_s,
                            w.level_dbfs,
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
        // No CatID: no suggestion.
        let cat = vec![Label::new("DOORS", Taxonomy::UcsCategory, 0.9)];
        assert!(suggest_name(Path::new("a.wav"), &cat, "JD", "LIB").is_none());
    }
}
