//! The whole-encoder version of the paper's grid, packed to travel to a lent GPU machine and
//! run there in one go (it runs on CPU too, at tiny scale, so it is tested everywhere).
//!
//! - [`pack`]: the prepared mel cache of every source (duplicates left out), each clip cut to
//!   `max_frames`, quantised to u8 with one affine scale, gzip-compressed into one file small
//!   enough to send along (the GPU machine has no network and no corpus).
//! - [`run`]: RQ1 (losses), RQ2 (within vs UCS-transfer vs cross-dataset) and RQ3 (sequential vs
//!   joint, FDR, dataset BN) of the paper, each configuration trained under an equal share of a
//!   time budget and scored by the paper's per-dataset kNN macro-F1 / Davies–Bouldin; writes
//!   `results.json`, `results.md` and the best configuration's checkpoint (f16 safetensors:
//!   results come back in files of at most 16 MiB; `sfxtag-export --weights` reads f16).

use crate::checkpoint;
use crate::prepare::{self, Split};
use crate::trainer::{self, Clip, Dataset, TrainConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sfxtag_core::frontend::{MelFrame, N_MELS};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

const MAGIC: &[u8; 8] = b"SFXPACK1";
/// Bump when the pack layout changes.
pub const PACK_VERSION: u32 = 1;
/// Default frames kept per clip (4 s: most clips are shorter).
pub const DEFAULT_MAX_FRAMES: usize = 400;
/// Default size limit of a pack (what a GPU run can carry beside the binary).
pub const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;

/// One clip in a pack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackClip {
    pub dataset: usize,
    pub label: usize,
    /// UCS Category index into [`PackHeader::categories`].
    pub category: Option<usize>,
    pub split: Split,
    pub frames: usize,
}

/// One source dataset in a pack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackDataset {
    pub name: String,
    pub group: String,
    pub classes: Vec<String>,
}

/// What precedes the frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackHeader {
    pub version: u32,
    /// Log-mel value of u8 0 and of u8 255.
    pub lo: f32,
    pub hi: f32,
    pub datasets: Vec<PackDataset>,
    pub categories: Vec<String>,
    pub clips: Vec<PackClip>,
}

/// A pack in memory: its header and every clip's frames (dequantised).
pub struct Pack {
    pub header: PackHeader,
    pub mels: Vec<Vec<MelFrame>>,
}

/// What `pack` wrote.
#[derive(Debug, Clone)]
pub struct PackSummary {
    pub datasets: usize,
    pub clips: usize,
    pub frames: usize,
    pub bytes: u64,
}

/// Packs the prepared corpus of `cache` into `out`.
pub fn pack(cache: &Path, out: &Path, max_frames: usize, max_bytes: u64) -> Result<PackSummary> {
    let index = crate::corpus::CorpusIndex::load(cache)?;
    let excluded = crate::corpus::dedup::excluded(cache)?;
    let mut header = PackHeader {
        version: PACK_VERSION,
        lo: f32::INFINITY,
        hi: f32::NEG_INFINITY,
        datasets: Vec::new(),
        categories: Vec::new(),
        clips: Vec::new(),
    };
    let mut cats = BTreeSet::new();
    let mut kept: Vec<(usize, prepare::PreparedClip)> = Vec::new();
    for d in &index.datasets {
        let p = prepare::load_prepared(cache, &d.name)?;
        let ds = header.datasets.len();
        header.datasets.push(PackDataset {
            name: d.name.clone(),
            group: d.group().to_string(),
            classes: p.labels.clone(),
        });
        for mut c in p.clips {
            if excluded.contains(&(d.name.clone(), c.rel_path.clone())) || c.mel.is_empty() {
                continue;
            }
            c.mel.truncate(max_frames.max(1));
            for f in &c.mel {
                for &v in f {
                    header.lo = header.lo.min(v);
                    header.hi = header.hi.max(v);
                }
            }
            if let Some(e) = c.ucs_catid.as_deref().and_then(sfxtag_core::ucs::lookup) {
                cats.insert(e.category.to_string());
            }
            kept.push((ds, c));
        }
    }
    if kept.is_empty() {
        bail!("{}: no prepared clips to pack", cache.display());
    }
    header.categories = cats.into_iter().collect();
    let scale = 255.0 / (header.hi - header.lo).max(1e-6);
    let mut payload = Vec::new();
    for (ds, c) in &kept {
        let classes = &header.datasets[*ds].classes;
        header.clips.push(PackClip {
            dataset: *ds,
            label: classes
                .binary_search(&c.native_label)
                .expect("labels come from the clips"),
            category: c
                .ucs_catid
                .as_deref()
                .and_then(sfxtag_core::ucs::lookup)
                .and_then(|e| {
                    header
                        .categories
                        .binary_search(&e.category.to_string())
                        .ok()
                }),
            split: c.split,
            frames: c.mel.len(),
        });
        for f in &c.mel {
            payload.extend(f.iter().map(|&v| ((v - header.lo) * scale).round() as u8));
        }
    }
    let json = serde_json::to_vec(&header)?;
    let tmp = out.with_extension("tmp");
    {
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        gz.write_all(MAGIC)?;
        gz.write_all(&(json.len() as u32).to_le_bytes())?;
        gz.write_all(&json)?;
        gz.write_all(&payload)?;
        gz.finish()?.sync_all()?;
    }
    let bytes = std::fs::metadata(&tmp)?.len();
    if bytes > max_bytes {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "the pack would be {:.1} MiB, over the {:.1} MiB limit: lower --max-frames (now {max_frames})",
            bytes as f64 / 1048576.0,
            max_bytes as f64 / 1048576.0
        );
    }
    std::fs::rename(&tmp, out)?;
    Ok(PackSummary {
        datasets: header.datasets.len(),
        clips: header.clips.len(),
        frames: payload.len() / N_MELS,
        bytes,
    })
}

/// Reads a pack written by [`pack`].
pub fn read_pack(path: &Path) -> Result<Pack> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let mut magic = [0u8; 8];
    gz.read_exact(&mut magic)
        .with_context(|| format!("{}: not a pack", path.display()))?;
    if &magic != MAGIC {
        bail!("{}: not an sfxtag-train pack", path.display());
    }
    let mut len = [0u8; 4];
    gz.read_exact(&mut len)?;
    let mut json = vec![0u8; u32::from_le_bytes(len) as usize];
    gz.read_exact(&mut json)?;
    let header: PackHeader = serde_json::from_slice(&json)
        .with_context(|| format!("{}: bad pack header", path.display()))?;
    if header.version != PACK_VERSION {
        bail!(
            "{}: pack version {} (this build reads {PACK_VERSION})",
            path.display(),
            header.version
        );
    }
    let step = (header.hi - header.lo) / 255.0;
    let mut mels = Vec::with_capacity(header.clips.len());
    let mut buf = vec![0u8; N_MELS];
    for c in &header.clips {
        let mut mel = Vec::with_capacity(c.frames);
        for _ in 0..c.frames {
            gz.read_exact(&mut buf)
                .with_context(|| format!("{}: truncated pack", path.display()))?;
            let mut f = [0f32; N_MELS];
            for (o, &q) in f.iter_mut().zip(&buf) {
                *o = header.lo + q as f32 * step;
            }
            mel.push(f);
        }
        mels.push(mel);
    }
    Ok(Pack { header, mels })
}

/// One configuration of the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridConfig {
    pub name: String,
    /// The paper's research question it answers.
    pub rq: String,
    pub scenario: String,
    pub loss: String,
    pub dataset_bn: bool,
    pub fdr_beta: Option<f64>,
}

/// The grid: RQ1 losses under x-joint, RQ2 within / ucs-transfer / x-joint, RQ3 x-sequential,
/// FDR and dataset BN (x-joint CE is shared by all three).
pub fn grid() -> Vec<GridConfig> {
    let c =
        |name: &str, rq: &str, scenario: &str, loss: &str, bn: bool, fdr: Option<f64>| GridConfig {
            name: name.into(),
            rq: rq.into(),
            scenario: scenario.into(),
            loss: loss.into(),
            dataset_bn: bn,
            fdr_beta: fdr,
        };
    vec![
        c("x-joint-ce", "RQ1-3", "x-joint", "ce", false, None),
        c("x-joint-triplet", "RQ1", "x-joint", "triplet", false, None),
        c("x-joint-circle", "RQ1", "x-joint", "circle", false, None),
        c(
            "x-joint-contrastive",
            "RQ1",
            "x-joint",
            "contrastive",
            false,
            None,
        ),
        c("within-ucs", "RQ2", "within", "ce", false, None),
        c("ucs-transfer", "RQ2", "ucs-transfer", "ce", false, None),
        c("x-sequential-ce", "RQ3", "x-sequential", "ce", false, None),
        c("x-joint-fdr", "RQ3", "x-joint", "ce", false, Some(0.999)),
        c("x-joint-dataset-bn", "RQ3", "x-joint", "ce", true, None),
    ]
}

/// What `gpu-run` does.
#[derive(Debug, Clone)]
pub struct GridOptions {
    pub pack: PathBuf,
    pub out: PathBuf,
    pub device: Device,
    /// A few clips, a few steps: proves the whole run on CPU in seconds.
    pub tiny: bool,
    /// Time for the whole grid (shared equally by the configurations).
    pub minutes: f64,
    /// Initial encoder (export-scheme safetensors or aiSFX `.pth`); `None`: random, as the paper.
    pub init: Option<PathBuf>,
    pub batch: usize,
    pub seed: u64,
    /// Only these configurations (names); all when empty.
    pub only: Vec<String>,
}

/// One configuration's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridRow {
    pub config: GridConfig,
    pub epochs: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub best_val_loss: f64,
    /// Per dataset: (name, macro-F1, Davies–Bouldin, test windows).
    pub scores: Vec<(String, f64, f64, usize)>,
    pub mean_macro_f1: f64,
}

/// `results.json` of a grid run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridResults {
    pub device: String,
    pub tiny: bool,
    pub datasets: Vec<(String, usize, usize, usize)>,
    pub rows: Vec<GridRow>,
    pub best: String,
    pub seconds: f64,
}

/// The UCS Category pool (named `ucs`, trained first by `within`) and every source dataset
/// that has two classes and non-empty splits.
fn datasets(p: &Pack, tiny: bool) -> Vec<Dataset> {
    let per = if tiny { 6 } else { usize::MAX };
    let mut ucs = Dataset {
        name: "ucs".into(),
        classes: p.header.categories.clone(),
        train: vec![],
        val: vec![],
        test: vec![],
    };
    let mut natives: Vec<Dataset> = p
        .header
        .datasets
        .iter()
        .map(|d| Dataset {
            name: d.name.clone(),
            classes: d.classes.clone(),
            train: vec![],
            val: vec![],
            test: vec![],
        })
        .collect();
    for (c, mel) in p.header.clips.iter().zip(&p.mels) {
        let d = &mut natives[c.dataset];
        let split = match c.split {
            Split::Train => &mut d.train,
            Split::Val => &mut d.val,
            Split::Test => &mut d.test,
        };
        if split.len() < per {
            split.push(Clip::mel(mel.clone(), c.label));
        }
        if let Some(cat) = c.category {
            let split = match c.split {
                Split::Train => &mut ucs.train,
                Split::Val => &mut ucs.val,
                Split::Test => &mut ucs.test,
            };
            if split.len() < per {
                split.push(Clip::mel(mel.clone(), cat));
            }
        }
    }
    let usable = |d: &Dataset| {
        d.classes.len() >= 2 && !d.train.is_empty() && !d.val.is_empty() && !d.test.is_empty()
    };
    let mut out: Vec<Dataset> = Vec::new();
    if usable(&ucs) {
        out.push(ucs);
    }
    // Tiny: three sources are enough to run every scenario.
    let sources = if tiny { 3 } else { usize::MAX };
    out.extend(natives.into_iter().filter(usable).take(sources));
    out
}

/// Runs the grid and writes `out/`.
pub fn run(opts: &GridOptions, mut log: impl FnMut(&str)) -> Result<GridResults> {
    let t0 = std::time::Instant::now();
    let pack = read_pack(&opts.pack)?;
    let sets = datasets(&pack, opts.tiny);
    if sets.first().is_none_or(|d| d.name != "ucs") {
        bail!("the pack has no usable UCS Category pool (clips with a UCS CatID in every split)");
    }
    if sets.len() < 2 {
        bail!("the pack has no usable source dataset besides the UCS pool");
    }
    let init = match &opts.init {
        Some(p) => Some(std::sync::Arc::new(crate::trunk::load_weights(p)?)),
        None => None,
    };
    let configs: Vec<GridConfig> = grid()
        .into_iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.name))
        .collect();
    if configs.is_empty() {
        bail!("--only names no configuration of the grid");
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let share = opts.minutes * 60.0 / configs.len() as f64;
    let mut rows = Vec::new();
    let mut best: Option<(f64, String)> = None;
    for (i, gc) in configs.iter().enumerate() {
        log(&format!(
            "[{}/{}] {} ({}), up to {:.0} s",
            i + 1,
            configs.len(),
            gc.name,
            gc.rq,
            share
        ));
        let cfg = TrainConfig {
            scenario: gc.scenario.parse().map_err(anyhow::Error::msg)?,
            loss: crate::experiment::parse_loss(&gc.loss)?,
            dataset_bn: gc.dataset_bn,
            fdr_beta: gc.fdr_beta,
            lr: 1e-3,
            batch: if opts.tiny { 4 } else { opts.batch },
            steps_per_epoch: if opts.tiny { 1 } else { 100 },
            max_epochs: if opts.tiny { 1 } else { 1000 },
            patience: if opts.tiny { 1 } else { 5 },
            seed: opts.seed,
            device: opts.device,
            init: init.clone(),
            max_seconds: Some(share),
            ..TrainConfig::default()
        };
        let start = std::time::Instant::now();
        let mut samples = 0;
        let trained = trainer::train(&sets, &cfg, |e| samples += e.samples)?;
        let seconds = start.elapsed().as_secs_f64();
        let mut scores = Vec::new();
        // The UCS pool repeats the sources' clips: score the sources only.
        for (ds, d) in sets.iter().enumerate().skip(1) {
            let s = trainer::evaluate(&trained.model, d, ds, opts.device)?;
            scores.push((d.name.clone(), s.macro_f1, s.davies_bouldin, s.test_windows));
        }
        let mean = scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64;
        log(&format!(
            "  {} epochs, {:.0} samples/s, mean macro-F1 {mean:.3}",
            trained.history.len(),
            samples as f64 / seconds.max(1e-9)
        ));
        if best.as_ref().is_none_or(|b| mean > b.0) {
            best = Some((mean, gc.name.clone()));
            save_half(&trained.vs, &opts.out.join("best.safetensors"))?;
        }
        rows.push(GridRow {
            config: gc.clone(),
            epochs: trained.history.len(),
            seconds,
            samples_per_s: samples as f64 / seconds.max(1e-9),
            best_val_loss: trained.best_val_loss,
            scores,
            mean_macro_f1: mean,
        });
    }
    let results = GridResults {
        device: format!("{:?}", opts.device),
        tiny: opts.tiny,
        datasets: sets
            .iter()
            .map(|d| (d.name.clone(), d.train.len(), d.val.len(), d.test.len()))
            .collect(),
        rows,
        best: best.map(|b| b.1).unwrap_or_default(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    std::fs::write(
        opts.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(opts.out.join("results.md"), markdown(&results))?;
    for d in &sets {
        std::fs::write(
            opts.out.join(format!("labels-{}.txt", d.name)),
            d.classes.join("\n") + "\n",
        )?;
    }
    Ok(results)
}

/// The export form (BN set 0) at half precision.
fn save_half(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    let full = path.with_extension("f32.tmp");
    checkpoint::save_for_export(vs, 0, &full)?;
    let named = tch::Tensor::read_safetensors(&full)?;
    let half: Vec<(String, tch::Tensor)> = named
        .into_iter()
        .map(|(n, t)| (n, t.to_kind(Kind::Half)))
        .collect();
    tch::Tensor::write_safetensors(&half, path)?;
    std::fs::remove_file(&full)?;
    Ok(())
}

/// The grid as Markdown: one row per configuration, one column per dataset.
pub fn markdown(r: &GridResults) -> String {
    let mut s = format!(
        "Whole-encoder grid on {} ({}), {:.0} s in all. Best: **{}**.\n\n| configuration | RQ | epochs | samples/s | mean macro-F1 |",
        r.device,
        if r.tiny { "tiny" } else { "full" },
        r.seconds,
        r.best
    );
    let names: Vec<&str> = r.datasets.iter().skip(1).map(|d| d.0.as_str()).collect();
    for n in &names {
        let _ = write!(s, " {n} |");
    }
    s.push_str("\n| --- | --- | ---: | ---: | ---: |");
    for _ in &names {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for row in &r.rows {
        let _ = write!(
            s,
            "| {} | {} | {} | {:.0} | {:.3} |",
            row.config.name, row.config.rq, row.epochs, row.samples_per_s, row.mean_macro_f1
        );
        for sc in &row.scores {
            let _ = write!(s, " {:.3} |", sc.1);
        }
        s.push('\n');
    }
    s
}
