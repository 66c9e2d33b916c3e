//! `sfxtag-export`: turn trained CNN9-max weights into a deployable model directory.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use sfxtag_core::manifest::{Provenance, Taxonomy};
use sfxtag_export::{
    calib_set, export_model, export_model_split, Calibration, Cnn9Weights, ExportOptions,
    HeadLabels,
};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CalibArg {
    /// Largest activation seen (never clips).
    Minmax,
    /// 99.99th percentile of each activation (clips the top 0.01 %).
    Percentile,
}

/// Export CNN9-max weights to a model directory for the sfxtag daemon: `encoder.onnx` (int8,
/// QOperator, per-tensor, tract-friendly), `encoder.fp32.onnx`, `manifest.toml`.
///
/// Steps: fold BatchNorm → cross-layer equalisation → run the fp32 graph in tract over the
/// calibration audio to set int8 activation ranges → quantise → compare int8 with fp32 on
/// held-out files (embedding cosine, head top-1) and refuse to write a model below the gates.
/// The directory appears atomically: on any error nothing is left behind.
///
/// Examples:
///
///   sfxtag-export --weights run7.safetensors --calib corpus/val --out models/ucs-v1 \
///       --id ucs --version 1 --head-labels ucs=labels.txt --head-taxonomy ucs=ucs-catid
///
///   scripts/fetch-aisfx && sfxtag-export --aisfx-checkpoint .cache/aisfx/checkpoint.pth \
///       --calib data/fixtures --out models/aisfx-cnn9 --force
#[derive(Parser, Debug)]
#[command(
    name = "sfxtag-export",
    disable_version_flag = true,
    verbatim_doc_comment
)]
struct Args {
    /// Weights in safetensors (names: `encoder.block{1..4}.conv{1,2}.weight`,
    /// `encoder.block{N}.bn{K}.{weight,bias,running_mean,running_var}`,
    /// `head.<name>.fc{0,1,2}.{weight,bias}`; see the crate docs).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "aisfx_checkpoint",
        required_unless_present = "aisfx_checkpoint"
    )]
    weights: Option<PathBuf>,
    /// The released aiSFX `checkpoint.pth` (scripts/fetch-aisfx puts it in .cache/aisfx/).
    /// Sets licence CC-BY-4.0, the attribution and a NOTICE file.
    #[arg(long, value_name = "FILE")]
    aisfx_checkpoint: Option<PathBuf>,
    /// Calibration audio: files or directories (searched recursively for wav, ogg, oga, mp3,
    /// flac). Every `--holdout-every`-th file is held back for the quality gates.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    calib: Vec<PathBuf>,
    /// Hold out every N-th calibration file (sorted by path) for the int8 gates.
    #[arg(long, default_value_t = 4, value_name = "N")]
    holdout_every: usize,
    /// Use at most this many calibration windows (evenly subsampled).
    #[arg(long, default_value_t = 400, value_name = "N")]
    max_calib_windows: usize,
    /// Output model directory, e.g. models/<name>.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Write only the int8 encoder (default: int8 `encoder.onnx` + fp32 `encoder.fp32.onnx`).
    #[arg(long, conflicts_with = "fp32")]
    int8: bool,
    /// Write only the fp32 encoder (as `encoder.onnx`).
    #[arg(long)]
    fp32: bool,
    /// Model id for the manifest.
    #[arg(long)]
    id: Option<String>,
    /// Model version for the manifest.
    #[arg(long, default_value = "0.0.0")]
    version: String,
    #[arg(long, default_value = "")]
    description: String,
    /// SPDX licence id of the weights.
    #[arg(long)]
    license: Option<String>,
    #[arg(long)]
    attribution: Option<String>,
    /// Provenance: training data description.
    #[arg(long, default_value = "")]
    training_data: String,
    /// Provenance: training scenario.
    #[arg(long, default_value = "")]
    scenario: String,
    /// `NAME=FILE`: labels of head NAME, one per line, in logit order (repeatable).
    #[arg(long, value_name = "NAME=FILE")]
    head_labels: Vec<String>,
    /// `NAME=ucs-category|ucs-catid|custom`: taxonomy of head NAME's labels (default custom).
    #[arg(long, value_name = "NAME=TAXONOMY")]
    head_taxonomy: Vec<String>,
    /// Activation-range calibration.
    #[arg(long, value_enum, default_value_t = CalibArg::Minmax)]
    calibration: CalibArg,
    /// Gate: worst held-out window int8/fp32 embedding cosine.
    #[arg(long, default_value_t = 0.99)]
    min_cosine: f64,
    /// Gate: mean held-out int8/fp32 embedding cosine.
    #[arg(long, default_value_t = 0.995)]
    min_mean_cosine: f64,
    /// Gate: per-head top-1 agreement (checked with ≥ 20 held-out windows).
    #[arg(long, default_value_t = 0.9)]
    min_top1: f64,
    /// Report the gates but write the model even when they fail.
    #[arg(long)]
    no_gates: bool,
    /// Skip cross-layer equalisation (for comparison only: per-tensor int8 loses accuracy).
    #[arg(long)]
    no_equalize: bool,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
}

fn parse_kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} '{s}' must be NAME=VALUE"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let (weights, source, is_aisfx) = if let Some(p) = &args.aisfx_checkpoint {
        #[cfg(feature = "pth")]
        {
            let w = sfxtag_export::aisfx::load_checkpoint(p)
                .with_context(|| format!("loading aiSFX checkpoint {}", p.display()))?;
            (w, p.clone(), true)
        }
        #[cfg(not(feature = "pth"))]
        bail!(
            "this sfxtag-export was built without the `pth` feature; cannot read {}",
            p.display()
        );
    } else {
        let p = args.weights.clone().expect("clap requires one");
        let w = Cnn9Weights::from_safetensors(&p)
            .with_context(|| format!("loading weights {}", p.display()))?;
        (w, p, false)
    };
    let weights_sha = sfxtag_core::manifest::sha256_hex(
        &std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?,
    );

    let mut head_labels = std::collections::BTreeMap::<String, HeadLabels>::new();
    for s in &args.head_labels {
        let (name, file) = parse_kv(s, "--head-labels")?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading labels of head {name} from {file}"))?;
        let labels = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        head_labels.insert(
            name,
            HeadLabels {
                taxonomy: Taxonomy::Custom,
                labels,
            },
        );
    }
    for s in &args.head_taxonomy {
        let (name, t) = parse_kv(s, "--head-taxonomy")?;
        let taxonomy = match t.as_str() {
            "ucs-category" => Taxonomy::UcsCategory,
            "ucs-catid" => Taxonomy::UcsCatId,
            "custom" => Taxonomy::Custom,
            _ => bail!("--head-taxonomy {name}={t}: expected ucs-category, ucs-catid or custom"),
        };
        head_labels
            .entry(name)
            .or_insert(HeadLabels {
                taxonomy,
                labels: Vec::new(),
            })
            .taxonomy = taxonomy;
    }

    let files = calib_set::audio_files(&args.calib)?;
    if files.is_empty() {
        bail!(
            "no audio files ({}) found under {:?}: the calibration set is empty",
            calib_set::AUDIO_EXT.join(", "),
            args.calib
        );
    }
    let set = calib_set::split(&files, args.holdout_every, args.max_calib_windows);
    for (f, e) in &set.skipped {
        eprintln!("warning: skipping {}: {e}", f.display());
    }
    if set.cal.is_empty() {
        bail!(
            "the calibration set is empty: none of the {} audio files gave a window ({} failed to decode)",
            files.len(),
            set.skipped.len()
        );
    }
    eprintln!(
        "calibration: {} windows from {} files; held out: {} windows from {} files; {} skipped",
        set.cal.len(),
        set.cal_files,
        set.held.len(),
        set.held_files,
        set.skipped.len()
    );
    let (cal, held) = (set.cal, set.held);

    let mut opts = ExportOptions {
        id: args.id.clone().unwrap_or_else(|| {
            if is_aisfx {
                "aisfx-cnn9".into()
            } else {
                args.out
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| "sfxtag-cnn9".into())
            }
        }),
        version: args.version.clone(),
        description: args.description.clone(),
        license: args.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
        attribution: args.attribution.clone().unwrap_or_default(),
        provenance: Provenance {
            source: format!(
                "{} (sha256 {weights_sha})",
                source.file_name().unwrap_or_default().to_string_lossy()
            ),
            training_data: args.training_data.clone(),
            scenario: args.scenario.clone(),
            exported_by: format!(
                "sfxtag-export {}: {command_line}",
                env!("CARGO_PKG_VERSION")
            ),
            metrics: Vec::new(),
        },
        head_labels,
        calibration: match args.calibration {
            CalibArg::Minmax => Calibration::MinMax,
            CalibArg::Percentile => Calibration::Percentile,
        },
        int8: !args.fp32,
        fp32: !args.int8,
        equalize: !args.no_equalize,
        enforce_gates: !args.no_gates,
        overwrite: args.force,
        ..Default::default()
    };
    opts.gates.cosine_min = args.min_cosine;
    opts.gates.cosine_mean = args.min_mean_cosine;
    opts.gates.head_top1_min = args.min_top1;
    #[cfg(feature = "pth")]
    if is_aisfx {
        if args.license.is_none() {
            opts.license = sfxtag_export::aisfx::LICENSE.into();
        }
        if args.attribution.is_none() {
            opts.attribution = sfxtag_export::aisfx::ATTRIBUTION.into();
        }
        if opts.description.is_empty() {
            opts.description = "Released aiSFX encoder (CNN9-max, Ma & Lerch, ISMIR 2022) with its 9 unlabeled dataset heads; use with a kNN reference set".into();
        }
        if opts.provenance.training_data.is_empty() {
            opts.provenance.training_data = "aiSFX: nine commercial sound-effects libraries (see the paper); weights from aisfx 0.1.2 on PyPI".into();
        }
        if opts.provenance.scenario.is_empty() {
            opts.provenance.scenario = "cross-dataset (released aiSFX checkpoint)".into();
        }
        opts.extra_files.push((
            "NOTICE".into(),
            sfxtag_export::aisfx::NOTICE.as_bytes().to_vec(),
        ));
    }
    // A single file: hold out windows of it instead (export_model's split).
    let report = if held.is_empty() {
        export_model(&weights, &opts, &cal, &args.out)
    } else {
        export_model_split(&weights, &opts, &cal, &held, &args.out)
    };
    let report = report.with_context(|| format!("exporting to {}", args.out.display()))?;
    print!("{}", report.summary());
    Ok(())
}
