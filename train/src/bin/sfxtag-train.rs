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
    /// Run the frozen encoder over every window of the prepared corpus (duplicates left out)
    /// and cache the embeddings; --noisy mixes each clip with another source's ambience first.
    #[command(after_help = "\
Examples:
  sfxtag-train embed --cache .cache/corpus --model models/aisfx-cnn9
  sfxtag-train embed --cache .cache/corpus --model models/aisfx-cnn9 --noisy --snr 10
A re-run only computes datasets whose clips, encoder or settings changed.")]
    Embed(EmbedArgs),
    /// Leave-one-source-out evaluation of UCS Category heads on cached embeddings — kNN over
    /// the shipped references, kNN over the corpus, MLP heads (clean, noise-augmented, with
    /// the aiSFX heads' posteriors), an ensemble — and, with --export, the winning heads
    /// trained on everything and written into a model directory.
    #[command(after_help = "\
Examples:
  sfxtag-train heads --cache .cache/corpus --model models/aisfx-cnn9 --out runs/heads
  sfxtag-train heads --cache .cache/corpus --model models/aisfx-cnn9 --out runs/heads \\
      --export models/default --aisfx-checkpoint .cache/aisfx/checkpoint.pth --calib data/fixtures
Needs `embed` and `embed --noisy` first. Writes OUT/loso.md and OUT/loso.json.")]
    Heads(HeadsArgs),
}

#[derive(Args)]
struct EmbedArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// Model directory whose encoder runs (its fp32 twin when it has one).
    #[arg(long, default_value = "models/aisfx-cnn9")]
    model: PathBuf,
    /// Mix every clip with an ambience of another source group first.
    #[arg(long)]
    noisy: bool,
    /// Signal-to-noise ratio of the mix, dB.
    #[arg(long, default_value_t = 10.0)]
    snr: f32,
    /// Seed choosing each clip's ambience and its offset.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most windows per clip (evenly spaced).
    #[arg(long, default_value_t = sfxtag_train::heads::embed::DEFAULT_MAX_WINDOWS)]
    max_windows: usize,
    /// Encoder threads (default: the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct HeadsArgs {
    /// Cache folder holding the corpus and its embeddings.
    #[arg(long)]
    cache: PathBuf,
    /// The model that made the embeddings (z-score statistics; its refs are baseline (a)).
    #[arg(long, default_value = "models/aisfx-cnn9")]
    model: PathBuf,
    /// Output folder for loso.md / loso.json.
    #[arg(long)]
    out: PathBuf,
    /// SNR and seed of the noisy embeddings to test on (as given to `embed --noisy`).
    #[arg(long, default_value_t = 10.0)]
    snr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// MLP training steps per head.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// A source group is a fold when it has this many labelled clips.
    #[arg(long, default_value_t = 15)]
    min_test_clips: usize,
    /// Precision a confident label must reach on held-out sources (per-class thresholds).
    #[arg(long, default_value_t = 0.8)]
    precision: f32,
    /// Evaluate only these methods (comma-separated: shipped-knn, corpus-knn, mlp, mlp-noise,
    /// mlp-noise-aisfx, ensemble), for quick experiments.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// MLP class sampling: classes drawn ∝ clips^POWER (0: class-balanced, 1: as the corpus
    /// holds them). The default 0.3 is the better of 0 and 0.3 by LOSO (docs/results.md).
    #[arg(long, default_value_t = 0.3)]
    class_power: f64,
    /// Also score every method (trained on the whole corpus) on this folder of labelled audio
    /// (`labels.csv`: file,ucs_catid,…).
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Evaluate only the first N folds (quick experiments; 0: only --fixtures).
    #[arg(long, value_name = "N")]
    max_folds: Option<usize>,
    /// Train the winning heads on every source and write this model directory.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// The released aiSFX checkpoint (the encoder of the exported model).
    #[arg(long, default_value = ".cache/aisfx/checkpoint.pth")]
    aisfx_checkpoint: PathBuf,
    /// Calibration audio of the int8 encoder (as `sfxtag-export --calib`).
    #[arg(long, default_value = "data/fixtures")]
    calib: Vec<PathBuf>,
    /// Version of the exported model.
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Replace an existing --export directory.
    #[arg(long)]
    force: bool,
    /// With --export: use the evaluation already in OUT/loso.json (same corpus and
    /// embeddings) instead of evaluating again.
    #[arg(long)]
    reuse_eval: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
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
    /// Download and unpack the packages, read their archives, check the reviewed tables against
    /// them, and write DIR/corpus.json and DIR/ATTRIBUTION.
    Fetch(FetchArgs),
    /// Find the recordings that several sources share (identical bytes, or the same decoded
    /// audio) and write DIR/duplicates.csv; everything built on the corpus leaves them out.
    /// Run after `prepare --any-dataset`.
    #[command(after_help = "\
Example:
  sfxtag-train corpus dedup --cache .cache/corpus --reference data/fixtures
A clip that is the same recording as a --reference file is left out too (so tests on the
fixtures are not tests on training data).")]
    Dedup(DedupArgs),
    /// Distinct clips, sources and hours per UCS Category (duplicates left out), and which
    /// Categories are classes of the heads.
    Report(ReportArgs),
}

#[derive(Args)]
struct DedupArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// Audio files or folders that corpus clips must not duplicate (repeatable).
    #[arg(long, value_name = "PATH")]
    reference: Vec<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// Also write the report to this Markdown file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct FetchArgs {
    /// Cache folder (debs/, unpacked/, corpus.json, ATTRIBUTION). Keep it out of git.
    #[arg(long)]
    cache: PathBuf,
    /// Packages (Debian or dataset names, comma-separated); default: every package of the corpus
    /// (51, `corpus::sources`), or none when only --ucs-dir / --csv are given.
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
    /// Also cache datasets that cannot be split for training (one class, too few clips per
    /// label): the heads and leave-one-source-out evaluation use every dataset.
    #[arg(long)]
    any_dataset: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Audio files among `paths` (folders searched recursively), sorted.
fn audio_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(corpus::walk_audio(p)?.into_iter().map(|r| p.join(r)));
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", p.display());
        }
    }
    out.sort();
    Ok(out)
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
        Command::Corpus {
            command: CorpusCommand::Dedup(a),
        } => {
            let refs = audio_files(&a.reference)?;
            let (dups, n) = corpus::dedup::dedup_corpus(&a.cache, &refs)?;
            let by = |m: &str| dups.iter().filter(|d| d.method == m).count();
            println!(
                "{n} clips compared ({} references): {} duplicates ({} identical files, {} the same audio), {} of them of a reference",
                refs.len(),
                dups.len(),
                by("md5"),
                by("audio"),
                dups.iter().filter(|d| d.kept_dataset == "reference").count()
            );
            println!(
                "wrote {} ({:.1} s)",
                a.cache.join(corpus::dedup::DUPLICATES_FILE).display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Corpus {
            command: CorpusCommand::Report(a),
        } => {
            let index = corpus::CorpusIndex::load(&a.cache)?;
            let excluded = corpus::dedup::excluded(&a.cache)?;
            let report = corpus::report::build(&a.cache, &index, &excluded)?;
            let md = report.markdown();
            print!("{md}");
            if let Some(out) = &a.out {
                std::fs::write(out, &md)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            }
        }
        Command::Prepare(a) => {
            let opts = prepare::PrepareOptions {
                cache: a.cache,
                datasets: a.datasets,
                require_ucs: a.require_ucs,
                seed: a.seed,
                progress: !a.quiet,
                trainable: !a.any_dataset,
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
        Command::Embed(a) => {
            let variant = if a.noisy {
                sfxtag_train::heads::embed::Variant::Noisy {
                    snr_db: a.snr,
                    seed: a.seed,
                }
            } else {
                sfxtag_train::heads::embed::Variant::Clean
            };
            let opts = sfxtag_train::heads::embed::EmbedOptions {
                cache: a.cache.clone(),
                model: a.model,
                variant,
                max_windows: a.max_windows,
                threads: a
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                progress: !a.quiet,
            };
            sfxtag_train::heads::embed::embed(&opts)?;
            println!(
                "{} embeddings in {} ({:.1} s)",
                variant.name(),
                a.cache.join("embeddings").join(variant.name()).display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Heads(a) => {
            // The heads are small: one thread per matrix product beats spreading each product
            // over cores (measured: see docs/results.md).
            tch::set_num_threads(1);
            let command: Vec<String> = std::env::args().collect();
            let command = command.join(" ");
            let mut opts = sfxtag_train::heads::eval::EvalOptions::new(&a.cache, &a.model);
            opts.noisy = sfxtag_train::heads::embed::Variant::Noisy {
                snr_db: a.snr,
                seed: a.seed,
            };
            opts.mlp.steps = a.steps;
            opts.min_test_clips = a.min_test_clips;
            opts.precision = a.precision;
            opts.mlp.class_power = a.class_power;
            opts.fixtures = a.fixtures.clone();
            opts.max_folds = a.max_folds;
            if !a.methods.is_empty() {
                opts.methods = a
                    .methods
                    .iter()
                    .map(|m| {
                        sfxtag_train::heads::eval::Method::ALL
                            .into_iter()
                            .find(|x| x.key() == m)
                            .ok_or_else(|| anyhow::anyhow!("--methods: unknown method '{m}'"))
                    })
                    .collect::<Result<_>>()?;
            }
            opts.progress = !a.quiet;
            let quiet = a.quiet;
            let (json, md) = sfxtag_train::heads::eval::report_paths(&a.out);
            let (report, setup) = if a.reuse_eval {
                let report: sfxtag_train::heads::eval::EvalReport =
                    serde_json::from_slice(&std::fs::read(&json).map_err(|e| {
                        anyhow::anyhow!("--reuse-eval: cannot read {}: {e}", json.display())
                    })?)?;
                (report, sfxtag_train::heads::eval::Setup::load(&opts)?)
            } else {
                let (report, setup, _) = sfxtag_train::heads::eval::run(&opts, |l| {
                    if !quiet {
                        eprintln!("{l}");
                    }
                })?;
                std::fs::create_dir_all(&a.out)?;
                std::fs::write(&json, serde_json::to_vec_pretty(&report)?)?;
                let text = report.markdown(&command);
                std::fs::write(&md, &text)?;
                print!("{text}");
                (report, setup)
            };
            if let Some(dir) = &a.export {
                let fit = sfxtag_train::heads::fit::FitOptions {
                    out: dir.clone(),
                    aisfx_checkpoint: a.aisfx_checkpoint.clone(),
                    calib: audio_files(&a.calib)?,
                    version: a.version.clone(),
                    overwrite: a.force,
                    mlp: opts.mlp.clone(),
                    command: command.clone(),
                    cache: a.cache.clone(),
                };
                let summary = sfxtag_train::heads::fit::fit(&fit, &setup, &report)?;
                print!("{summary}");
            }
            println!(
                "wrote {} ({:.1} s)",
                md.display(),
                t0.elapsed().as_secs_f64()
            );
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
