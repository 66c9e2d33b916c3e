//! One experiment end to end: prepared datasets → training (optionally a random search over
//! hyper-parameters) → the paper's evaluation of every dataset with the baselines beside it →
//! `results.json`, `results.md`, `results.svg`, the full checkpoint and the export form.

use crate::checkpoint;
use crate::losses::MetricLoss;
use crate::metrics;
use crate::model::{Cnn9, DatasetHead};
use crate::prepare::{self, PreparedDataset, Split};
use crate::trainer::{self, Clip, Dataset, DatasetScore, Input, Scenario, TrainConfig};
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sfxtag_core::frontend::{window_count, MelFrame, N_MELS, WINDOW_FRAMES, WINDOW_HOP};
use std::fmt::Write as _;
use std::path::Path;

/// Name of the pooled UCS dataset built for `ucs-transfer` (trainer: names starting "ucs").
pub const UCS_DATASET: &str = "ucs";

fn to_dataset(p: &PreparedDataset) -> Dataset {
    let split = |s: Split| -> Vec<Clip> {
        p.split(s)
            .map(|c| {
                Clip::mel(
                    c.mel.clone(),
                    p.class_of(&c.native_label).expect("label from the dataset"),
                )
            })
            .collect()
    };
    Dataset {
        name: p.name.clone(),
        classes: p.labels.clone(),
        train: split(Split::Train),
        val: split(Split::Val),
        test: split(Split::Test),
    }
}

/// Pools every clip with a UCS CatID into one dataset labelled by UCS *category* (the coarse
/// level: CatIDs are too sparse per class in this corpus), keeping each clip's own split.
pub fn ucs_pool(sets: &[PreparedDataset]) -> Result<Dataset> {
    let mut classes: Vec<String> = sets
        .iter()
        .flat_map(|d| d.clips.iter())
        .filter_map(|c| c.ucs_catid.as_deref())
        .filter_map(sfxtag_core::ucs::lookup)
        .map(|e| e.category.to_string())
        .collect();
    classes.sort();
    classes.dedup();
    let mut d = Dataset {
        name: UCS_DATASET.into(),
        classes: classes.clone(),
        train: vec![],
        val: vec![],
        test: vec![],
    };
    for c in sets.iter().flat_map(|d| d.clips.iter()) {
        let Some(e) = c.ucs_catid.as_deref().and_then(sfxtag_core::ucs::lookup) else {
            continue;
        };
        let label = classes
            .binary_search(&e.category.to_string())
            .expect("pooled");
        let clip = Clip::mel(c.mel.clone(), label);
        match c.split {
            Split::Train => d.train.push(clip),
            Split::Val => d.val.push(clip),
            Split::Test => d.test.push(clip),
        }
    }
    if d.train.is_empty() {
        bail!("no clip of the selected datasets has a UCS CatID");
    }
    Ok(d)
}

/// Loads prepared datasets by name (and the UCS pool first when the scenario needs it).
pub fn load(cache: &Path, names: &[String], scenario: Scenario) -> Result<Vec<Dataset>> {
    let prepared: Vec<PreparedDataset> = names
        .iter()
        .map(|n| prepare::load_prepared(cache, n))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    if scenario == Scenario::UcsTransfer {
        out.push(ucs_pool(&prepared)?);
    }
    out.extend(prepared.iter().map(to_dataset));
    Ok(out)
}

/// MFCC-statistics baseline: per window, the mean and standard deviation of 20 DCT-II
/// coefficients of the log-mel frames (the classic hand-made feature the paper compares with).
pub fn mfcc_stats(frames: &[MelFrame]) -> Vec<f32> {
    const N: usize = 20;
    let mut coeffs: Vec<[f32; N]> = Vec::with_capacity(frames.len());
    for f in frames {
        let mut c = [0f32; N];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = f
                .iter()
                .enumerate()
                .map(|(n, &x)| {
                    x * (std::f32::consts::PI / N_MELS as f32 * (n as f32 + 0.5) * k as f32).cos()
                })
                .sum();
        }
        coeffs.push(c);
    }
    let n = coeffs.len().max(1) as f32;
    let mut out = vec![0f32; 2 * N];
    for c in &coeffs {
        for k in 0..N {
            out[k] += c[k] / n;
        }
    }
    for c in &coeffs {
        for k in 0..N {
            out[N + k] += (c[k] - out[k]).powi(2) / n;
        }
    }
    for v in &mut out[N..] {
        *v = v.sqrt();
    }
    out
}

fn mfcc_windows(clips: &[Clip]) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut e = Vec::new();
    let mut l = Vec::new();
    for c in clips {
        // MFCC statistics need the mel frames; trunk-cache clips have none.
        let Input::Mel(frames) = &c.input else {
            continue;
        };
        for w in 0..window_count(frames.len()).max(1) {
            let s = w * WINDOW_HOP;
            let end = (s + WINDOW_FRAMES).min(frames.len());
            e.push(mfcc_stats(&frames[s..end]));
            l.push(c.label);
        }
    }
    (e, l)
}

/// The paper's kNN evaluation on MFCC statistics instead of learned embeddings.
pub fn evaluate_mfcc(d: &Dataset) -> Result<DatasetScore> {
    let (tr, trl) = mfcc_windows(&d.train);
    let (te, tel) = mfcc_windows(&d.test);
    let z = metrics::ZScore::fit(&tr)?;
    let trz: Vec<Vec<f32>> = tr.iter().map(|v| z.apply(v)).collect();
    let tez: Vec<Vec<f32>> = te.iter().map(|v| z.apply(v)).collect();
    let pred = metrics::knn_predict(&trz, &trl, &tez, 5)?;
    Ok(DatasetScore {
        dataset: d.name.clone(),
        macro_f1: metrics::macro_f1(&tel, &pred)?,
        davies_bouldin: metrics::davies_bouldin(&tez, &tel).unwrap_or(f64::NAN),
        test_windows: te.len(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub dataset: String,
    pub model: String,
    pub macro_f1: f64,
    pub davies_bouldin: f64,
    pub test_windows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub scenario: String,
    pub loss: String,
    pub dataset_bn: bool,
    pub fdr_beta: Option<f64>,
    pub lr: f64,
    pub best_val_loss: f64,
    pub epochs: usize,
    pub command: String,
    pub rows: Vec<Row>,
}

/// Random search: `trials` draws of learning rate and metric-loss weight; the trial with the
/// lowest validation loss wins.
pub fn run(
    datasets: &[Dataset],
    base: &TrainConfig,
    trials: usize,
    out: &Path,
    command: &str,
) -> Result<Results> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let mut rng = StdRng::seed_from_u64(base.seed ^ 0x9e37);
    let mut best: Option<(trainer::Trained, TrainConfig)> = None;
    for t in 0..trials.max(1) {
        let mut cfg = base.clone();
        if trials > 1 {
            cfg.lr = 10f64.powf(rng.random_range(-4.0..-2.5));
            cfg.metric_weight = rng.random_range(0.1..2.0);
            cfg.seed = base.seed + t as u64;
        }
        eprintln!(
            "trial {}/{}: lr {:.2e}, metric weight {:.2}",
            t + 1,
            trials.max(1),
            cfg.lr,
            cfg.metric_weight
        );
        let trained = trainer::train(datasets, &cfg, |e| eprintln!("  {e}"))?;
        if best
            .as_ref()
            .is_none_or(|(b, _)| trained.best_val_loss < b.best_val_loss)
        {
            best = Some((trained, cfg));
        }
    }
    let (trained, cfg) = best.expect("at least one trial");
    checkpoint::save(&trained.vs, &out.join("model.safetensors"))?;
    checkpoint::save_for_export(&trained.vs, 0, &out.join("export.safetensors"))?;
    // One label file per head, in logit order, for `sfxtag-export --head-labels NAME=FILE`.
    for d in datasets {
        std::fs::write(
            out.join(format!("labels-{}.txt", d.name)),
            d.classes.join("\n") + "\n",
        )?;
    }
    // Baselines beside the trained encoder: a randomly initialised CNN9 and MFCC statistics.
    let random_vs = tch::nn::VarStore::new(cfg.device);
    let heads: Vec<DatasetHead> = trained.model.datasets.clone();
    let random = Cnn9::new(&random_vs.root(), &heads, cfg.dataset_bn);
    let mut rows = Vec::new();
    for (ds, d) in datasets.iter().enumerate() {
        for (name, model) in [("trained", &trained.model), ("random-init", &random)] {
            let s = trainer::evaluate(model, d, ds, cfg.device)?;
            rows.push(row(&s, name));
        }
        rows.push(row(&evaluate_mfcc(d)?, "mfcc-stats"));
    }
    let results = Results {
        scenario: format!("{:?}", cfg.scenario),
        loss: cfg.loss.name().into(),
        dataset_bn: cfg.dataset_bn,
        fdr_beta: cfg.fdr_beta,
        lr: cfg.lr,
        best_val_loss: trained.best_val_loss,
        epochs: trained.history.len(),
        command: command.into(),
        rows,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join("results.md"), markdown(&results))?;
    std::fs::write(out.join("results.svg"), svg_bars(&results))?;
    Ok(results)
}

fn row(s: &DatasetScore, model: &str) -> Row {
    Row {
        dataset: s.dataset.clone(),
        model: model.into(),
        macro_f1: s.macro_f1,
        davies_bouldin: s.davies_bouldin,
        test_windows: s.test_windows,
    }
}

/// The results as a Markdown table.
pub fn markdown(r: &Results) -> String {
    let mut s = format!(
        "Scenario {} · loss {} · dataset BN {} · FDR β {} · lr {:.2e} · {} epochs\n\n`{}`\n\n| dataset | model | macro-F1 | Davies–Bouldin | test windows |\n| --- | --- | ---: | ---: | ---: |\n",
        r.scenario,
        r.loss,
        r.dataset_bn,
        r.fdr_beta.map(|b| b.to_string()).unwrap_or_else(|| "off".into()),
        r.lr,
        r.epochs,
        r.command
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.2} | {} |",
            row.dataset, row.model, row.macro_f1, row.davies_bouldin, row.test_windows
        );
    }
    s
}

/// Per-dataset grouped bars of macro-F1 (like the paper's figures), as a standalone SVG.
pub fn svg_bars(r: &Results) -> String {
    let mut datasets: Vec<&str> = r.rows.iter().map(|x| x.dataset.as_str()).collect();
    datasets.dedup();
    let mut models: Vec<&str> = r.rows.iter().map(|x| x.model.as_str()).collect();
    models.sort();
    models.dedup();
    let colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"];
    let (w, h, left, bottom) = (120 * datasets.len().max(1) + 80, 320, 50.0, 260.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"{left}\" y=\"16\">macro-F1 (kNN, k = 5) — {} / {}</text>\n<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"black\"/>\n",
        r.scenario,
        r.loss,
        w - 10
    );
    let bw = 100.0 / models.len().max(1) as f64;
    for (i, d) in datasets.iter().enumerate() {
        let x0 = left + 10.0 + 120.0 * i as f64;
        for (j, m) in models.iter().enumerate() {
            if let Some(row) = r.rows.iter().find(|x| x.dataset == *d && x.model == *m) {
                let bh = 220.0 * row.macro_f1.clamp(0.0, 1.0);
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{m}: {:.3}</title></rect>",
                    x0 + bw * j as f64,
                    bottom - bh,
                    bw - 2.0,
                    colours[j % colours.len()],
                    row.macro_f1
                );
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{d}</text>",
            x0,
            bottom + 14.0
        );
    }
    for (j, m) in models.iter().enumerate() {
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\">{m}</text>",
            left + 120.0 * j as f64,
            bottom + 30.0,
            colours[j % colours.len()],
            left + 14.0 + 120.0 * j as f64,
            bottom + 39.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Parses `ce|contrastive|triplet|circle`.
pub fn parse_loss(s: &str) -> Result<MetricLoss> {
    Ok(match s {
        "ce" => MetricLoss::None,
        "contrastive" => MetricLoss::contrastive(),
        "triplet" => MetricLoss::triplet(),
        "circle" => MetricLoss::circle(),
        _ => bail!("unknown loss '{s}': use ce, contrastive, triplet or circle"),
    })
}
