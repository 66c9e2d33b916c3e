//! `sfxtag-train`: the host-side trainer's command line. Each subcommand is one variant of
//! [`Command`]; add new ones there.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sfxtag_train::trainer::{Scenario, TrainConfig};
use sfxtag_train::{corpus, experiment, prepare};
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
    /// Train a CNN9-max encoder on prepared datasets and evaluate it as the paper does (kNN
    /// macro-F1 and Davies–Bouldin per dataset, beside random-init and MFCC baselines).
    #[command(after_help = "\
Examples:
  sfxtag-train train --cache .cache/corpus --datasets 0ad,wesnoth,redeclipse,minetest \\
      --scenario x-joint --loss triplet --out runs/xjoint-triplet
  sfxtag-train train --cache .cache/corpus --datasets 0ad,wesnoth --scenario ucs-transfer \\
      --loss ce --trials 8 --out runs/ucs-ce
Writes OUT/results.{json,md,svg}, OUT/model.safetensors (all weights) and OUT/export.safetensors
(the form `sfxtag-export --weights` reads). On a CUDA machine the GPU is used automatically.")]
    Train(TrainArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Cache folder with prepared datasets (from `prepare`).
    #[arg(long)]
    cache: PathBuf,
    /// Datasets to use (comma-separated); `within` trains on the first only.
    #[arg(long, value_delimiter = ',', required = true)]
    datasets: Vec<String>,
    /// within | ucs-transfer | x-sequential | x-joint
    #[arg(long, default_value = "x-joint")]
    scenario: Scenario,
    /// ce | contrastive | triplet | circle (metric losses are joint with CE)
    #[arg(long, default_value = "ce")]
    loss: String,
    /// One BatchNorm set per dataset.
    #[arg(long)]
    dataset_bn: bool,
    /// Focal dataset reweighting with this β (e.g. 0.999).
    #[arg(long)]
    fdr_beta: Option<f64>,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 100)]
    steps_per_epoch: usize,
    #[arg(long, default_value_t = 100)]
    max_epochs: usize,
    /// Early stopping: epochs without a better validation loss.
    #[arg(long, default_value_t = 5)]
    patience: usize,
    /// Random-search trials over learning rate and metric-loss weight.
    #[arg(long, default_value_t = 1)]
    trials: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto | cpu | cuda
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// libtorch registers its CUDA backend only when libtorch_cuda.so is loaded before the first
/// tch call; the linker drops it from a Rust binary, so load it by hand (harmless without it).
fn load_cuda_backend() {
    for name in [c"libtorch_cuda.so", c"libtorch_cuda_cpp.so"] {
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept for the process.
        unsafe {
            libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        }
    }
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
        Command::Train(a) => {
            load_cuda_backend();
            let device = match a.device.as_str() {
                "auto" => tch::Device::cuda_if_available(),
                "cpu" => tch::Device::Cpu,
                "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
                "cuda" => anyhow::bail!("--device cuda: no CUDA device is available to libtorch"),
                d => anyhow::bail!("unknown --device '{d}': use auto, cpu or cuda"),
            };
            let cfg = TrainConfig {
                scenario: a.scenario,
                loss: experiment::parse_loss(&a.loss)?,
                dataset_bn: a.dataset_bn,
                fdr_beta: a.fdr_beta,
                lr: a.lr,
                batch: a.batch,
                steps_per_epoch: a.steps_per_epoch,
                max_epochs: a.max_epochs,
                patience: a.patience,
                seed: a.seed,
                device,
                ..TrainConfig::default()
            };
            let datasets = experiment::load(&a.cache, &a.datasets, a.scenario)?;
            let command: Vec<String> = std::env::args().collect();
            let r = experiment::run(&datasets, &cfg, a.trials, &a.out, &command.join(" "))?;
            print!("{}", experiment::markdown(&r));
            println!(
                "wrote {} ({:.1} s on {device:?})",
                a.out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
