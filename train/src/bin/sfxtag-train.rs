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
    /// Build the training corpus (Debian packages, PyPI wheels, UCS folders, CSV lists).
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
  sfxtag-train embed --cache .cache/corpus --model runs/ft-x/model --int8 --store runs/ft-x/emb-int8
  sfxtag-train embed --cache .cache/corpus --from-trunk runs/ft-x/encoder.safetensors \\
      --store runs/ft-x/emb-trunk [--noisy]
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
    /// Run the frozen encoder's blocks 1–3 once over corpus windows and cache their output
    /// (256 × 12 × 12 per window, f16, memory-mapped) for `finetune`. Resumable: a re-run
    /// computes only datasets that changed or are missing.
    #[command(after_help = "Example:
  sfxtag-train trunk --cache .cache/corpus --weights .cache/aisfx/checkpoint.pth
  sfxtag-train trunk --cache .cache/corpus --offset-pass --noisy   # for `embed --from-trunk --noisy`

Needs `corpus fetch`, `prepare --any-dataset` and `corpus dedup` first. Writes CACHE/trunk/
(the noisy variant: CACHE/trunk/noisy-snrSNR-seedSEED/).")]
    Trunk(TrunkArgs),
    /// Fine-tune the encoder's block 4 (from aiSFX) with the paper's cross-dataset setups on the
    /// trunk cache, on CPU, then score frozen vs fine-tuned by the paper's per-dataset kNN
    /// macro-F1 / Davies–Bouldin. Writes OUT/results.md|json, OUT/checkpoint.safetensors and
    /// OUT/encoder.safetensors (blocks 1–3 of aiSFX + the trained block 4, for sfxtag-export).
    #[command(after_help = "Examples:
  # UCS Category head on half of the sources; the other half stays unheard (LOSO-safe)
  sfxtag-train finetune --cache .cache/corpus --scenario ucs-transfer --train-half 0 --out runs/ft-ucs
  # the paper's x-joint: one head per source, CE + triplet with RegularFace, dataset BN
  sfxtag-train finetune --cache .cache/corpus --scenario x-joint --loss triplet --dataset-bn --out runs/ft-xj

Then: sfxtag-export --weights OUT/encoder.safetensors … and `embed`/`heads --store` on it.")]
    Finetune(FinetuneArgs),
    /// Compare `finetune` runs side by side (one Markdown row each: setup, epochs, samples/s,
    /// frozen → fine-tuned kNN macro-F1 on seen and held-out sources) and rewrite each run's
    /// results.md from its results.json.
    #[command(after_help = "Example:
  sfxtag-train finetune-report runs/ft-*")]
    FinetuneReport(FinetuneReportArgs),
    /// Compare `heads` evaluations with a baseline over the folds both hold (e.g. the frozen
    /// encoder's embeddings and fine-tuned encoders'): mean top-1 of each per method and
    /// variant, the paired per-fold difference ± one standard error, and a verdict (a difference
    /// within one standard error is a tie). Several runs give one table, a row per run.
    #[command(after_help = "Examples:
  sfxtag-train heads-compare runs/frozen-h1/loso runs/ft-ucs/loso
  sfxtag-train heads-compare runs/frozen-trunk/loso runs/ft-*/loso")]
    HeadsCompare(HeadsCompareArgs),
    /// Pack the prepared corpus for a GPU run: every clip's first frames as u8 log-mel with one
    /// scale, gzip-compressed into one file (default at most 50 MiB).
    #[command(after_help = "Example:
  sfxtag-train pack --cache .cache/corpus --out runs/gpu/corpus.pack")]
    Pack(PackArgs),
    /// The paper's grid with the whole encoder (RQ1 losses; RQ2 within / UCS-transfer /
    /// cross-dataset; RQ3 sequential vs joint, FDR, dataset BN) on a pack, in one run under a
    /// time budget: results.md|json and the best checkpoint (f16) in OUT. Built for a lent GPU;
    /// `--device cpu --tiny` proves it end to end in seconds.
    #[command(after_help = "Examples:
  sfxtag-train gpu-run --pack runs/gpu/corpus.pack --device cuda --minutes 8 --out $OUT
  sfxtag-train gpu-run --pack runs/gpu/corpus.pack --device cpu --tiny --out /tmp/grid")]
    GpuRun(GpuRunArgs),
    /// Training throughput of block 4 + a head on random trunk input (batch 64, Adam, CE): the
    /// number to put beside PyTorch eager (train/bench/block4_eager.py) on the same machine.
    BenchBlock4(BenchArgs),
}

#[derive(Args)]
struct PackArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// The pack file to write.
    #[arg(long)]
    out: PathBuf,
    /// Frames kept per clip (100 frames = one 1-s window).
    #[arg(long, default_value_t = sfxtag_train::gpu_run::DEFAULT_MAX_FRAMES)]
    max_frames: usize,
    /// Refuse to write a pack larger than this many MiB.
    #[arg(long, default_value_t = 50)]
    max_mib: u64,
}

#[derive(Args)]
struct GpuRunArgs {
    /// The pack (from `pack`).
    #[arg(long)]
    pack: PathBuf,
    /// Output folder (results.md, results.json, best.safetensors, labels-*.txt).
    #[arg(long)]
    out: PathBuf,
    /// auto | cpu | cuda
    #[arg(long, default_value = "auto")]
    device: String,
    /// Six clips per split and dataset, one step per configuration.
    #[arg(long)]
    tiny: bool,
    /// Minutes for the whole grid, shared equally by its configurations.
    #[arg(long, default_value_t = 8.0)]
    minutes: f64,
    /// Start every configuration from these encoder weights (default: random, as the paper).
    #[arg(long)]
    init: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only these configurations (comma-separated names from results.md).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Classes of the head.
    #[arg(long, default_value_t = 38)]
    classes: i64,
    /// Measured steps (after the warm-up).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// libtorch threads (default: the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrunkArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// Encoder weights: the released aiSFX checkpoint (scripts/fetch-aisfx).
    #[arg(long, default_value = ".cache/aisfx/checkpoint.pth")]
    weights: PathBuf,
    /// Most windows per clip (evenly spaced, 50 % overlap).
    #[arg(long, default_value_t = sfxtag_train::trunk::DEFAULT_MAX_WINDOWS)]
    max_windows: usize,
    /// Also cache as many windows again, starting 25 frames later.
    #[arg(long)]
    offset_pass: bool,
    /// --noisy: the noisy variant, into CACHE/trunk/noisy-snrSNR-seedSEED/.
    #[command(flatten)]
    noise: NoiseArgs,
    /// libtorch threads (default: the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct HeadsCompareArgs {
    /// `heads --out` folder (or its loso.json): A, the baseline.
    a: PathBuf,
    /// `heads --out` folder(s) (or loso.json) compared with A; with more than one, one table
    /// with a row per run (named after its folder: runs/ft-x/loso → ft-x).
    #[arg(required = true, value_name = "B")]
    b: Vec<PathBuf>,
}

#[derive(Args)]
struct FinetuneReportArgs {
    /// Output folders of `finetune` runs (each holding results.json), in the order to list them.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
}

#[derive(Args)]
struct FinetuneArgs {
    /// Cache folder holding the trunk cache (from `trunk`).
    #[arg(long)]
    cache: PathBuf,
    /// Initial encoder weights (the trunk cache's blocks 1–3 must come from the same file).
    #[arg(long, default_value = ".cache/aisfx/checkpoint.pth")]
    weights: PathBuf,
    /// ucs-transfer (one head on the pooled UCS Categories) | x-joint (one head per source,
    /// all at once) | x-sequential (sources one after another)
    #[arg(long, default_value = "ucs-transfer")]
    scenario: Scenario,
    /// ce | contrastive | triplet | circle (metric losses are joint with CE and RegularFace,
    /// on class-balanced 16 × 4 batches)
    #[arg(long, default_value = "ce")]
    loss: String,
    /// Weight of the metric loss against CE.
    #[arg(long, default_value_t = 1.0)]
    metric_weight: f64,
    /// One BatchNorm set of block 4 per dataset (set 0 is exported).
    #[arg(long)]
    dataset_bn: bool,
    /// Focal dataset reweighting with this β (e.g. 0.999).
    #[arg(long)]
    fdr_beta: Option<f64>,
    /// x-joint / x-sequential: also train a head on the pooled UCS Categories.
    #[arg(long)]
    ucs_head: bool,
    /// Train on this half (0 or 1) of the source groups only; the other half is never heard.
    #[arg(long)]
    train_half: Option<usize>,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 40)]
    steps_per_epoch: usize,
    #[arg(long, default_value_t = 50)]
    max_epochs: usize,
    /// Early stopping: epochs without a better validation loss.
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Stop after the epoch that passes this many minutes (best weights kept).
    #[arg(long, default_value_t = 30.0)]
    max_minutes: f64,
    /// Skip the per-dataset kNN evaluation.
    #[arg(long)]
    no_eval: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto | cpu | cuda
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch threads (default: the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// The noisy variant's flags, shared by `embed` and `trunk`.
#[derive(Args)]
struct NoiseArgs {
    /// Mix every clip with an ambience of another source group first.
    #[arg(long)]
    noisy: bool,
    /// Signal-to-noise ratio of the mix, dB (with --noisy).
    #[arg(long, default_value_t = 10.0)]
    snr: f32,
    /// Seed choosing each clip's ambience and its offset (with --noisy).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl NoiseArgs {
    fn variant(&self) -> sfxtag_train::heads::embed::Variant {
        use sfxtag_train::heads::embed::Variant;
        if self.noisy {
            Variant::Noisy {
                snr_db: self.snr,
                seed: self.seed,
            }
        } else {
            Variant::Clean
        }
    }
}

#[derive(Args)]
struct EmbedArgs {
    /// Cache folder holding the prepared corpus.
    #[arg(long)]
    cache: PathBuf,
    /// Model directory whose encoder runs (its fp32 twin when it has one).
    #[arg(long, default_value = "models/aisfx-cnn9")]
    model: PathBuf,
    #[command(flatten)]
    noise: NoiseArgs,
    /// Most windows per clip (evenly spaced).
    #[arg(long, default_value_t = sfxtag_train::heads::embed::DEFAULT_MAX_WINDOWS)]
    max_windows: usize,
    /// Encoder threads (default: the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the embeddings here instead of CACHE/embeddings (another encoder's).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Compute the embeddings with this encoder's block 4 over the cached trunk instead of
    /// running --model's whole encoder (any block 4 that `finetune` trained on this cache, or the
    /// released checkpoint). Needs `trunk` (and `trunk --noisy` for --noisy); the windows are the
    /// trunk's, so compare only stores made this way. Give --store.
    #[arg(long, value_name = "WEIGHTS")]
    from_trunk: Option<PathBuf>,
    /// With --from-trunk: the features of a row (`max`: the embedding the daemon's heads read;
    /// the others append more pooled features, to measure what they add: they do not export).
    #[arg(long, value_enum, default_value_t, requires = "from_trunk")]
    pool: sfxtag_train::heads::from_trunk::Pool,
    /// Run the model's int8 encoder (what the daemon runs) instead of its fp32 twin; give a
    /// --store of its own.
    #[arg(long, conflicts_with = "from_trunk")]
    int8: bool,
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
    /// holds them). The default 0.3 is the best of 0, 0.3 and 0.5 by LOSO (docs/results.md).
    #[arg(long, default_value_t = 0.3)]
    class_power: f64,
    /// MLP dropout (the input layer gets half of it).
    #[arg(long, default_value_t = 0.3)]
    dropout: f64,
    /// MLP label smoothing.
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// MLP AdamW weight decay.
    #[arg(long, default_value_t = 1e-3)]
    weight_decay: f64,
    /// Train this many MLP heads per head (different seeds) and merge them into one head
    /// whose logits are their mean (it exports as one wider head).
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// Seed of the MLP heads' initialisation and batches. The same recipe with another seed
    /// shows how far the training's chance alone moves the results (docs/results.md).
    #[arg(long, default_value_t = 0)]
    head_seed: u64,
    /// Also score every method (trained on the whole corpus) on this folder of labelled audio
    /// (`labels.csv`: file,ucs_catid,…).
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Evaluate only the first N folds (quick experiments; 0: only --fixtures).
    #[arg(long, value_name = "N")]
    max_folds: Option<usize>,
    /// Evaluate only these source groups' folds (comma-separated), e.g. the groups an encoder
    /// from `finetune --train-half` never heard (its results.json lists them).
    #[arg(long, value_delimiter = ',')]
    folds: Vec<String>,
    /// Read the embeddings from here instead of CACHE/embeddings (as given to `embed --store`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// What the heads read of each window: the embedding, or the embedding and block 3's
    /// pooled features (needs embeddings of an encoder with the `block3` output; the exported
    /// graph feeds its heads both).
    #[arg(long, value_enum, default_value_t)]
    features: sfxtag_train::heads::eval::Features,
    /// Leave windows quieter than this (RMS dBFS) out of training and testing, as the daemon's
    /// silence gate leaves them unclassified (default: the daemon's floor; -120 keeps every
    /// window, as reports before this option did).
    #[arg(long, value_name = "DBFS", allow_negative_numbers = true,
          default_value_t = sfxtag_core::frontend::DEFAULT_SILENCE_FLOOR_DBFS)]
    silence_floor: f32,
    /// Also score each held-out source as one batch whose mix of Categories is estimated from
    /// its own posteriors, as `sfxtag classify --batch-priors` does for a folder of files (EM;
    /// each value, comma-separated, is the training mix's weight in clips: 0 lets the batch
    /// alone decide).
    #[arg(
        long,
        value_name = "CLIPS",
        value_delimiter = ',',
        default_value = "0,10,30"
    )]
    prior_strengths: Vec<f32>,
    /// Also write every method's out-of-fold file-level posteriors to this file (JSON lines:
    /// method, fold, dataset, rel_path, true Category, clean and noisy probabilities per head
    /// class), to fuse them with other models' outputs outside the trainer.
    #[arg(long, value_name = "FILE")]
    posteriors: Option<PathBuf>,
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

/// The device named by `--device` (auto | cpu | cuda).
fn device(name: &str) -> Result<tch::Device> {
    load_cuda_backend();
    Ok(match name {
        "auto" => tch::Device::cuda_if_available(),
        "cpu" => tch::Device::Cpu,
        "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
        "cuda" => anyhow::bail!("--device cuda: no CUDA device is available to libtorch"),
        d => anyhow::bail!("unknown --device '{d}': use auto, cpu or cuda"),
    })
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    /// Cache folder (debs/, unpacked/, pypi/, corpus.json, ATTRIBUTION). Keep it out of git.
    #[arg(long)]
    cache: PathBuf,
    /// Packages (package or dataset names, comma-separated; `all` = every package of the
    /// corpus, so `all,keyboardsounds` adds an optional one); default: every package of the
    /// corpus (`corpus::sources`; Debian packages by `apt-get download`, PyPI wheels by `pip
    /// download`, checked by sha256), or none when only --ucs-dir / --csv are given.
    #[arg(long, value_delimiter = ',')]
    packages: Vec<String>,
    /// Use already unpacked packages from DIR/<package>/ instead of downloading (for a PyPI
    /// package, DIR/<package>/ holds its wheel).
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
            let variant = a.noise.variant();
            if let Some(weights) = &a.from_trunk {
                if a.store.is_none() {
                    anyhow::bail!(
                        "--from-trunk needs --store DIR (its windows are not those of CACHE/embeddings)"
                    );
                }
                tch::set_num_threads(a.threads.unwrap_or_else(cpu_count) as i32);
                let s = sfxtag_train::heads::from_trunk::embed(
                    &sfxtag_train::heads::from_trunk::FromTrunkOptions {
                        cache: a.cache.clone(),
                        weights: weights.clone(),
                        variant,
                        store: a.store.clone(),
                        pool: a.pool,
                        progress: !a.quiet,
                    },
                )?;
                println!(
                    "{} embeddings (block 4 of {} over the trunk) in {}: {} datasets built ({} windows), {} unchanged ({:.1} s)",
                    variant.name(),
                    weights.display(),
                    sfxtag_train::heads::embed::store_dir(&a.cache, a.store.as_deref(), &variant)
                        .display(),
                    s.datasets_built,
                    s.windows,
                    s.datasets_reused,
                    t0.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            let opts = sfxtag_train::heads::embed::EmbedOptions {
                cache: a.cache.clone(),
                model: a.model,
                variant,
                max_windows: a.max_windows,
                threads: a
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                progress: !a.quiet,
                store: a.store.clone(),
                int8: a.int8,
            };
            sfxtag_train::heads::embed::embed(&opts)?;
            println!(
                "{} embeddings in {} ({:.1} s)",
                variant.name(),
                sfxtag_train::heads::embed::store_dir(&a.cache, a.store.as_deref(), &variant)
                    .display(),
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
            opts.mlp.dropout = a.dropout;
            opts.mlp.label_smoothing = a.label_smoothing;
            opts.mlp.weight_decay = a.weight_decay;
            if a.ensemble == 0 {
                anyhow::bail!("--ensemble: at least 1 head");
            }
            opts.mlp.ensemble = a.ensemble;
            opts.mlp.seed = a.head_seed;
            opts.fixtures = a.fixtures.clone();
            opts.max_folds = a.max_folds;
            opts.folds = a.folds.clone();
            opts.store = a.store.clone();
            opts.features = a.features;
            if !(-120.0..=0.0).contains(&a.silence_floor) {
                anyhow::bail!(
                    "--silence-floor {}: must be -120–0 dBFS (-120 keeps every window)",
                    a.silence_floor
                );
            }
            opts.silence_floor_dbfs = a.silence_floor;
            if let Some(s) = a
                .prior_strengths
                .iter()
                .find(|s| !(s.is_finite() && **s >= 0.0))
            {
                anyhow::bail!("--prior-strengths {s}: a number of clips, 0 or more");
            }
            opts.prior_strengths = a.prior_strengths.clone();
            opts.posteriors = a.posteriors.clone();
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
                if report.features != a.features {
                    anyhow::bail!(
                        "--reuse-eval: {} evaluated --features {}, not {}",
                        json.display(),
                        report.features.name(),
                        a.features.name()
                    );
                }
                if report.silence_floor_dbfs != a.silence_floor {
                    anyhow::bail!(
                        "--reuse-eval: {} evaluated --silence-floor {}, not {}",
                        json.display(),
                        report.silence_floor_dbfs,
                        a.silence_floor
                    );
                }
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
        Command::Trunk(a) => {
            let variant = a.noise.variant();
            let opts = sfxtag_train::trunk::TrunkOptions {
                cache: a.cache.clone(),
                weights: a.weights,
                max_windows: a.max_windows,
                offset_pass: a.offset_pass,
                variant,
                threads: a.threads.unwrap_or_else(cpu_count),
                progress: !a.quiet,
            };
            let s = sfxtag_train::trunk::build(&opts)?;
            if s.skipped > 0 {
                eprintln!(
                    "{} clip(s) skipped (unreadable audio; each dataset's index lists them)",
                    s.skipped
                );
            }
            println!(
                "trunk cache {}: {} datasets built ({} clips, {} windows, {:.1} MB), {} unchanged ({:.1} s)",
                sfxtag_train::trunk::variant_dir(&a.cache, &variant).display(),
                s.datasets_built,
                s.clips,
                s.windows,
                s.bytes as f64 / 1e6,
                s.datasets_reused,
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Finetune(a) => {
            let device = device(&a.device)?;
            tch::set_num_threads(a.threads.unwrap_or_else(cpu_count) as i32);
            let command: Vec<String> = std::env::args().collect();
            let opts = sfxtag_train::finetune::FinetuneOptions {
                cache: a.cache,
                weights: a.weights,
                train: TrainConfig {
                    scenario: a.scenario,
                    loss: experiment::parse_loss(&a.loss)?,
                    metric_weight: a.metric_weight,
                    dataset_bn: a.dataset_bn,
                    fdr_beta: a.fdr_beta,
                    lr: a.lr,
                    batch: a.batch,
                    steps_per_epoch: a.steps_per_epoch,
                    max_epochs: a.max_epochs,
                    patience: a.patience,
                    seed: a.seed,
                    device,
                    max_seconds: Some(a.max_minutes * 60.0),
                    ..TrainConfig::default()
                },
                ucs_head: a.ucs_head,
                train_half: a.train_half,
                no_eval: a.no_eval,
                out: a.out.clone(),
                command: command.join(" "),
            };
            let r = sfxtag_train::finetune::run(&opts, |l| eprintln!("{l}"))?;
            print!("{}", sfxtag_train::finetune::markdown(&r));
            println!(
                "wrote {} ({:.1} s on {device:?})",
                a.out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::HeadsCompare(a) => {
            use sfxtag_train::heads::compare;
            let base = compare::read_report(&a.a)?;
            let mut runs = Vec::new();
            for b in &a.b {
                let rows = compare::compare(&base, &compare::read_report(b)?);
                if rows.is_empty() {
                    anyhow::bail!(
                        "{} and {} share no method and variant with two or more common folds",
                        a.a.display(),
                        b.display()
                    );
                }
                runs.push((b, rows));
            }
            if let [(b, rows)] = runs.as_slice() {
                print!(
                    "{}",
                    compare::markdown(&a.a.display().to_string(), &b.display().to_string(), rows)
                );
            } else {
                let named: Vec<(String, Vec<compare::Comparison>)> = runs
                    .into_iter()
                    .map(|(b, rows)| (compare::run_name(b), rows))
                    .collect();
                print!(
                    "{}",
                    compare::markdown_many(&compare::run_name(&a.a), &named)
                );
            }
        }
        Command::FinetuneReport(a) => {
            let mut runs = Vec::new();
            for dir in &a.runs {
                let r = sfxtag_train::finetune::refresh_report(dir)?;
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dir.display().to_string());
                runs.push((name, r));
            }
            print!("{}", sfxtag_train::finetune::compare(&runs));
        }
        Command::Pack(a) => {
            let s = sfxtag_train::gpu_run::pack(&a.cache, &a.out, a.max_frames, a.max_mib << 20)?;
            println!(
                "wrote {}: {} datasets, {} clips, {} frames, {:.1} MiB ({:.1} s)",
                a.out.display(),
                s.datasets,
                s.clips,
                s.frames,
                s.bytes as f64 / 1048576.0,
                t0.elapsed().as_secs_f64()
            );
        }
        Command::GpuRun(a) => {
            let device = device(&a.device)?;
            let opts = sfxtag_train::gpu_run::GridOptions {
                pack: a.pack,
                out: a.out.clone(),
                device,
                tiny: a.tiny,
                minutes: a.minutes,
                init: a.init,
                batch: a.batch,
                seed: a.seed,
                only: a.only,
            };
            let r = sfxtag_train::gpu_run::run(&opts, |l| eprintln!("{l}"))?;
            print!("{}", sfxtag_train::gpu_run::markdown(&r));
            println!(
                "wrote {} ({:.1} s on {device:?})",
                a.out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::BenchBlock4(a) => {
            let threads = a.threads.unwrap_or_else(cpu_count);
            tch::set_num_threads(threads as i32);
            let r = sfxtag_train::finetune::bench_block4(a.batch, a.classes, a.warmup, a.steps)?;
            if a.json {
                println!(
                    "{{\"impl\":\"tch\",\"threads\":{threads},\"batch\":{},\"steps\":{},\"ms_per_step\":{:.3},\"samples_per_s\":{:.2}}}",
                    a.batch, a.steps, r.0, r.1
                );
            } else {
                println!(
                    "block 4 + head, batch {}, {threads} threads: {:.1} ms per step, {:.1} samples/s",
                    a.batch, r.0, r.1
                );
            }
        }
        Command::Train(a) => {
            let device = device(&a.device)?;
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
