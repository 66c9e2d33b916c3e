//! `sfxtag-train`: the host-side trainer's command line. Each subcommand is one variant of
//! [`Command`]; add new ones there.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sfxtag_train::{corpus, prepare};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sfxtag-train",
    version,
    about = "Host-side trainer for sfxtag encoders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the training corpus (Debian game-data packages, UCS folders, CSV lists).
    Corpus {
        #[command(subcommand)]
        command: CorpusCommand,
    },
    /// Decode, resample and mel every clip of the corpus index into per-dataset caches, with a
    /// stratified 8:1:1 split by native label.
    Prepare(PrepareArgs),
}

#[derive(Subcommand)]
enum CorpusCommand {
    /// Download and unpack the packages, check the reviewed tables against them, and write
    /// DIR/corpus.json and DIR/ATTRIBUTION.
    Fetch(FetchArgs),
}

#[derive(Args)]
struct FetchArgs {
    /// Cache folder (debs/, unpacked/, corpus.json, ATTRIBUTION). Keep it out of git.
    #[arg(long)]
    cache: PathBuf,
    /// Packages (Debian or dataset names, comma-separated); default: all six, or none when only
    /// --ucs-dir / --csv are given.
    #[arg(long, value_delimiter = ',')]
    packages: Vec<String>,
    /// Use already unpacked packages from DIR/<package>/ instead of downloading.
    #[arg(long, value_name = "DIR")]
    from_dir: Option<PathBuf>,
    /// A folder of UCS-named files ([NAME=]DIR); the CatID comes from each name. Repeatable.
    #[arg(long, value_name = "[NAME=]DIR")]
    ucs_dir: Vec<String>,
    /// A CSV list with columns path,label (optional ucs_catid) ([NAME=]FILE). Repeatable.
    #[arg(long, value_name = "[NAME=]FILE")]
    csv: Vec<String>,
    /// Licence recorded for --ucs-dir and --csv sources.
    #[arg(long)]
    licence: Option<String>,
}

#[derive(Args)]
struct PrepareArgs {
    /// Cache folder holding corpus.json (from `corpus fetch`).
    #[arg(long)]
    cache: PathBuf,
    /// Datasets to prepare (comma-separated); default: all in the index.
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Every clip must have a UCS CatID (for UCS-transfer training).
    #[arg(long)]
    require_ucs: bool,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = prepare::DEFAULT_SEED)]
    seed: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let t0 = Instant::now();
    match cli.command {
        Command::Corpus {
            command: CorpusCommand::Fetch(a),
        } => {
            let opts = corpus::FetchOptions {
                cache: a.cache.clone(),
                packages: a.packages,
                from_dir: a.from_dir,
                ucs_dirs: a.ucs_dir.iter().map(|s| corpus::named_path(s)).collect(),
                csvs: a.csv.iter().map(|s| corpus::named_path(s)).collect(),
                user_licence: a.licence,
            };
            let index = corpus::fetch(&opts)?;
            println!(
                "{:<12} {:>6} {:>7} {:>8} {:>8}  licences",
                "dataset", "clips", "labels", "missing", "unlab."
            );
            for d in &index.datasets {
                let labels = index
                    .dataset_clips(&d.name)
                    .map(|c| c.native_label.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                println!(
                    "{:<12} {:>6} {:>7} {:>8} {:>8}  {}",
                    d.name,
                    d.clips,
                    labels,
                    d.missing.len(),
                    d.unlabelled,
                    d.licences.join(", ")
                );
            }
            println!(
                "wrote {} and {} ({:.1} s)",
                a.cache.join(corpus::INDEX_FILE).display(),
                a.cache.join(corpus::ATTRIBUTION_FILE).display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Prepare(a) => {
            let opts = prepare::PrepareOptions {
                cache: a.cache,
                datasets: a.datasets,
                require_ucs: a.require_ucs,
                seed: a.seed,
                progress: !a.quiet,
            };
            let reports = prepare::prepare(&opts)?;
            println!(
                "{:<12} {:>6} {:>7} {:>7} {:>16} {:>8} {:>7} {:>8} {:>9}",
                "dataset",
                "clips",
                "classes",
                "hours",
                "train/val/test",
                "decoded",
                "reused",
                "skipped",
                "MB"
            );
            for r in &reports {
                println!(
                    "{:<12} {:>6} {:>7} {:>7.3} {:>16} {:>8} {:>7} {:>8} {:>9.1}",
                    r.dataset,
                    r.clips,
                    r.classes,
                    r.hours,
                    format!(
                        "{}/{}/{}",
                        r.split_counts[0], r.split_counts[1], r.split_counts[2]
                    ),
                    r.decoded,
                    r.reused,
                    r.skipped,
                    r.bytes as f64 / 1e6
                );
            }
            println!("done in {:.1} s", t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
