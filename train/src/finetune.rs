//! Block 4 and the heads trained on the cached trunk, on CPU: the paper's cross-dataset setups
//! (`x-joint` with one head per source, `x-sequential`, `ucs-transfer`; CE with or without a
//! metric loss and RegularFace; FDR; dataset BatchNorm on block 4), starting from the released
//! aiSFX block 4, then the paper's per-dataset kNN evaluation of the frozen and the fine-tuned
//! encoder side by side.
//!
//! Source groups can be split in two halves ([`encoder_halves`]): an encoder trained on one half
//! has never heard the other, so leave-one-source-out scores of the other half's sources stay
//! honest when the heads are evaluated on its embeddings.

use crate::checkpoint;
use crate::model::Cnn9;
use crate::prepare::Split;
use crate::trainer::{self, Clip, Dataset, EpochLog, Input, Scenario, TrainConfig, TrunkWindows};
use crate::trunk::{self, TrunkDataset};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sfxtag_export::weights::Cnn9Weights;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use tch::nn;

/// Name of the pooled UCS Category dataset.
pub const UCS_HEAD: &str = "ucs";

/// What `finetune` does.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub cache: PathBuf,
    /// Initial encoder weights (aiSFX `.pth`); blocks 1–3 must be the trunk cache's.
    pub weights: PathBuf,
    pub train: TrainConfig,
    /// x-joint / x-sequential: also train a head on the pooled UCS Categories.
    pub ucs_head: bool,
    /// Train the encoder on this half of the source groups only (0 or 1).
    pub train_half: Option<usize>,
    /// Skip the paper's kNN evaluation.
    pub no_eval: bool,
    pub out: PathBuf,
    pub command: String,
}

/// Source groups sorted by name, dealt alternately into two halves.
pub fn encoder_halves(groups: &BTreeSet<String>) -> [Vec<String>; 2] {
    let mut halves = [Vec::new(), Vec::new()];
    for (i, g) in groups.iter().enumerate() {
        halves[i % 2].push(g.clone());
    }
    halves
}

fn trunk_clip(d: &TrunkDataset, c: &trunk::TrunkClip, label: usize) -> Clip {
    Clip {
        input: Input::Trunk(TrunkWindows {
            rows: Arc::clone(&d.rows),
            first: c.first,
            n: c.windows,
        }),
        label,
    }
}

fn push(ds: &mut Dataset, split: Split, clip: Clip) {
    match split {
        Split::Train => ds.train.push(clip),
        Split::Val => ds.val.push(clip),
        Split::Test => ds.test.push(clip),
    }
}

/// Why a dataset cannot be trained or scored, or `None`.
fn unusable(d: &Dataset) -> Option<String> {
    if d.classes.len() < 2 {
        return Some("fewer than 2 classes".into());
    }
    for (s, v) in [
        ("train", &d.train),
        ("validation", &d.val),
        ("test", &d.test),
    ] {
        if v.is_empty() {
            return Some(format!("empty {s} split"));
        }
    }
    None
}

/// The trainable datasets of the trunk cache's groups that were kept.
pub struct TrunkSets {
    /// Each dataset with its native labels, and its source group.
    pub native: Vec<(Dataset, String)>,
    /// Datasets that cannot be trained or scored, with the reason.
    pub dropped: Vec<(String, String)>,
    /// Every clip with a UCS CatID, labelled by its Category (`None`: not trainable).
    pub ucs: Option<Dataset>,
}

/// The datasets of the groups `keep` accepts.
pub fn datasets(trunk: &[TrunkDataset], keep: &dyn Fn(&str) -> bool) -> TrunkSets {
    let mut native = Vec::new();
    let mut dropped = Vec::new();
    let mut categories = BTreeSet::new();
    for d in trunk.iter().filter(|d| keep(&d.index.group)) {
        let classes: BTreeSet<&str> = d
            .index
            .clips
            .iter()
            .map(|c| c.native_label.as_str())
            .collect();
        let classes: Vec<String> = classes.into_iter().map(String::from).collect();
        let mut ds = Dataset {
            name: d.index.dataset.clone(),
            classes,
            train: vec![],
            val: vec![],
            test: vec![],
        };
        for c in &d.index.clips {
            let label = ds
                .classes
                .binary_search(&c.native_label)
                .expect("listed above");
            push(&mut ds, c.split, trunk_clip(d, c, label));
            if let Some(e) = c.ucs_catid.as_deref().and_then(sfxtag_core::ucs::lookup) {
                categories.insert(e.category.to_string());
            }
        }
        match unusable(&ds) {
            Some(why) => dropped.push((ds.name, why)),
            None => native.push((ds, d.index.group.clone())),
        }
    }
    let categories: Vec<String> = categories.into_iter().collect();
    let mut ucs = Dataset {
        name: UCS_HEAD.into(),
        classes: categories.clone(),
        train: vec![],
        val: vec![],
        test: vec![],
    };
    for d in trunk.iter().filter(|d| keep(&d.index.group)) {
        for c in &d.index.clips {
            let Some(e) = c.ucs_catid.as_deref().and_then(sfxtag_core::ucs::lookup) else {
                continue;
            };
            let label = categories
                .binary_search(&e.category.to_string())
                .expect("collected above");
            push(&mut ucs, c.split, trunk_clip(d, c, label));
        }
    }
    let ucs = unusable(&ucs).is_none().then_some(ucs);
    TrunkSets {
        native,
        dropped,
        ucs,
    }
}

/// One row of the paper's evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRow {
    pub dataset: String,
    pub group: String,
    /// Whether the fine-tuned encoder trained on this dataset's group.
    pub seen: bool,
    pub model: String,
    // NaN (a score that cannot be computed) is written as JSON null.
    #[serde(deserialize_with = "nan_if_null")]
    pub macro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub davies_bouldin: f64,
    pub test_windows: usize,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What `finetune` wrote into `out/results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneResults {
    pub command: String,
    pub scenario: String,
    pub loss: String,
    pub dataset_bn: bool,
    pub fdr_beta: Option<f64>,
    pub lr: f64,
    pub batch: usize,
    pub train_half: Option<usize>,
    /// Source groups the encoder trained on, and the others.
    pub trained_groups: Vec<String>,
    pub held_out_groups: Vec<String>,
    /// Heads trained: name, classes, train/val/test clips.
    pub heads: Vec<(String, usize, usize, usize, usize)>,
    pub dropped: Vec<(String, String)>,
    pub epochs: Vec<(usize, f64, f64)>,
    pub best_val_loss: f64,
    pub train_seconds: f64,
    pub samples_per_s: f64,
    pub rows: Vec<EvalRow>,
}

/// Trains block 4 + heads on the trunk cache, evaluates, and writes `out/`.
pub fn run(opts: &FinetuneOptions, mut log: impl FnMut(&str)) -> Result<FinetuneResults> {
    if opts.train.scenario == Scenario::Within {
        bail!("finetune trains across sources: use x-joint, x-sequential or ucs-transfer");
    }
    let base: Arc<Cnn9Weights> = Arc::new(trunk::load_weights(&opts.weights)?);
    let stores = trunk::open(&opts.cache)?;
    let groups: BTreeSet<String> = stores.iter().map(|d| d.index.group.clone()).collect();
    let (trained_groups, held_out_groups) = match opts.train_half {
        None => (groups.iter().cloned().collect::<Vec<_>>(), Vec::new()),
        Some(h) if h < 2 => {
            let [a, b] = encoder_halves(&groups);
            if h == 0 {
                (a, b)
            } else {
                (b, a)
            }
        }
        Some(h) => bail!("--train-half is 0 or 1, not {h}"),
    };
    let train_set: HashSet<&str> = trained_groups.iter().map(String::as_str).collect();
    let TrunkSets {
        native,
        dropped,
        ucs,
    } = datasets(&stores, &|g| train_set.contains(g));
    let mut train_sets: Vec<Dataset> = Vec::new();
    match opts.train.scenario {
        Scenario::UcsTransfer => train_sets.push(
            ucs.clone()
                .context("no clip of the training groups has a UCS Category")?,
        ),
        _ => {
            if opts.ucs_head {
                train_sets.extend(ucs.clone());
            }
            train_sets.extend(native.iter().map(|(d, _)| d.clone()));
        }
    }
    if train_sets.is_empty() {
        bail!("no dataset of the training groups can be trained on (see the dropped list)");
    }
    for (d, why) in &dropped {
        log(&format!("left out {d}: {why}"));
    }
    let heads: Vec<(String, usize, usize, usize, usize)> = train_sets
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.classes.len(),
                d.train.len(),
                d.val.len(),
                d.test.len(),
            )
        })
        .collect();
    log(&format!(
        "training block 4 on {} source groups, {} heads, {} training clips",
        trained_groups.len(),
        heads.len(),
        heads.iter().map(|h| h.2).sum::<usize>()
    ));
    let mut cfg = opts.train.clone();
    cfg.init = Some(Arc::clone(&base));
    let start = std::time::Instant::now();
    let mut samples = 0usize;
    let trained = trainer::train(&train_sets, &cfg, |e: &EpochLog| {
        samples += e.samples;
        log(&e.to_string());
    })?;
    let train_seconds = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    checkpoint::save(&trained.vs, &opts.out.join("checkpoint.safetensors"))?;
    checkpoint::save_merged(&trained.vs, 0, &base, &opts.out.join("encoder.safetensors"))?;
    for d in &train_sets {
        std::fs::write(
            opts.out.join(format!("labels-{}.txt", d.name)),
            d.classes.join("\n") + "\n",
        )?;
    }
    let mut rows = Vec::new();
    if !opts.no_eval {
        // Every usable dataset of every group: the held-out half tells what the encoder does
        // on sources it has never heard.
        let all = datasets(&stores, &|_| true).native;
        let frozen_vs = nn::VarStore::new(cfg.device);
        let frozen = Cnn9::from_block(&frozen_vs.root(), &[], false, 4);
        crate::model::init_encoder(&frozen_vs, &base)?;
        for (i, (d, group)) in all.iter().enumerate() {
            log(&format!(
                "evaluating {} ({}/{}): kNN macro-F1 and Davies–Bouldin",
                d.name,
                i + 1,
                all.len()
            ));
            for (name, model) in [("frozen aiSFX", &frozen), ("fine-tuned", &trained.model)] {
                let s = trainer::evaluate(model, d, 0, cfg.device)?;
                rows.push(EvalRow {
                    dataset: d.name.clone(),
                    group: group.clone(),
                    seen: train_set.contains(group.as_str()),
                    model: name.into(),
                    macro_f1: s.macro_f1,
                    davies_bouldin: s.davies_bouldin,
                    test_windows: s.test_windows,
                });
            }
        }
    }
    let results = FinetuneResults {
        command: opts.command.clone(),
        scenario: format!("{:?}", cfg.scenario),
        loss: cfg.loss.name().into(),
        dataset_bn: cfg.dataset_bn,
        fdr_beta: cfg.fdr_beta,
        lr: cfg.lr,
        batch: cfg.batch,
        train_half: opts.train_half,
        trained_groups,
        held_out_groups,
        heads,
        dropped,
        epochs: trained
            .history
            .iter()
            .map(|e| (e.epoch, e.train_loss, e.val_loss))
            .collect(),
        best_val_loss: trained.best_val_loss,
        train_seconds,
        samples_per_s: samples as f64 / train_seconds.max(1e-9),
        rows,
    };
    std::fs::write(
        opts.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(opts.out.join("results.md"), markdown(&results))?;
    // For `heads --folds "$(cat OUT/held-out-groups.txt)"`.
    std::fs::write(
        opts.out.join("held-out-groups.txt"),
        results.held_out_groups.join(",") + "\n",
    )?;
    Ok(results)
}

/// Training throughput of block 4 + one head on random trunk input (Adam, CE, train mode, on
/// the CPU): `(ms per step, samples/s)` over `steps` steps after `warmup`.
pub fn bench_block4(batch: usize, classes: i64, warmup: usize, steps: usize) -> Result<(f64, f64)> {
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind, Tensor};
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let heads = [crate::model::DatasetHead {
        name: "bench".into(),
        n_classes: classes,
    }];
    let model = Cnn9::from_block(&vs.root(), &heads, false, 4);
    let mut opt = nn::Adam::default().build(&vs, 1e-4)?;
    let [c, h, w] = crate::model::TRUNK_SHAPE;
    let x = Tensor::randn([batch as i64, c, h, w], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(classes, [batch as i64], (Kind::Int64, Device::Cpu));
    let mut step = || -> f64 {
        let loss = model
            .logits(&model.embed(&x, 0, true), 0)
            .cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
        loss.double_value(&[])
    };
    for _ in 0..warmup {
        step();
    }
    let t = std::time::Instant::now();
    for _ in 0..steps.max(1) {
        step();
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
    Ok((ms, batch as f64 * 1000.0 / ms))
}

/// Datasets whose test split has fewer windows are left out of the "scored" means: a split of
/// one or two windows scores a macro-F1 of 0 or 1 by chance and would swamp the mean.
pub const MIN_TEST_WINDOWS: usize = 10;

/// Mean of `f` over rows of `model` with at least `min_windows` test windows (and of `seen`
/// groups when given).
fn mean(
    r: &FinetuneResults,
    model: &str,
    seen: Option<bool>,
    min_windows: usize,
    f: fn(&EvalRow) -> f64,
) -> f64 {
    let v: Vec<f64> = r
        .rows
        .iter()
        .filter(|x| x.model == model && seen.is_none_or(|s| x.seen == s))
        .filter(|x| x.test_windows >= min_windows)
        .map(f)
        .filter(|v| v.is_finite())
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Number of datasets in a mean (as [`mean`] counts them).
fn count(r: &FinetuneResults, seen: Option<bool>, min_windows: usize) -> usize {
    r.rows
        .iter()
        .filter(|x| x.model == "fine-tuned" && seen.is_none_or(|s| x.seen == s))
        .filter(|x| x.test_windows >= min_windows && x.macro_f1.is_finite())
        .count()
}

/// `XJoint` (as results.json stores a scenario) → `x-joint` (as the command line writes it).
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// 1-based epoch of the best validation loss.
fn best_epoch(r: &FinetuneResults) -> Option<usize> {
    r.epochs
        .iter()
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|e| e.0)
}

/// One line per run, side by side: setup, training, and the paper's kNN macro-F1 (frozen →
/// fine-tuned) over the datasets with ≥ [`MIN_TEST_WINDOWS`] test windows, for the source
/// groups the encoder trained on and for those it never heard.
pub fn compare(runs: &[(String, FinetuneResults)]) -> String {
    let mut s = format!(
        "kNN macro-F1 per dataset (paper protocol), mean over datasets with ≥ {MIN_TEST_WINDOWS} test windows, frozen aiSFX → fine-tuned.\n\n\
         | run | scenario | loss | dataset BN | FDR β | epochs (best) | training s | samples/s | seen groups | held-out groups | all | DBI, all |\n\
         | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for (name, r) in runs {
        let f = |model, seen| mean(r, model, seen, MIN_TEST_WINDOWS, |x| x.macro_f1);
        let pair = |seen| {
            format!(
                "{:.3} → {:.3} ({})",
                f("frozen aiSFX", seen),
                f("fine-tuned", seen),
                count(r, seen, MIN_TEST_WINDOWS)
            )
        };
        let dbi = |model| mean(r, model, None, MIN_TEST_WINDOWS, |x| x.davies_bouldin);
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} ({}) | {:.0} | {:.1} | {} | {} | {} | {:.2} → {:.2} |",
            kebab(&r.scenario),
            r.loss,
            if r.dataset_bn { "yes" } else { "no" },
            r.fdr_beta.map(|b| b.to_string()).unwrap_or_else(|| "off".into()),
            r.epochs.len(),
            best_epoch(r).map(|e| e.to_string()).unwrap_or_else(|| "–".into()),
            r.train_seconds,
            r.samples_per_s,
            pair(Some(true)),
            pair(Some(false)),
            pair(None),
            dbi("frozen aiSFX"),
            dbi("fine-tuned"),
        );
    }
    s
}

/// Reads a run's `results.json` and rewrites its `results.md` with this version's [`markdown`].
pub fn refresh_report(dir: &std::path::Path) -> Result<FinetuneResults> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (a `finetune` output folder?)", path.display()))?;
    let r: FinetuneResults =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let md = dir.join("results.md");
    std::fs::write(&md, markdown(&r)).with_context(|| format!("writing {}", md.display()))?;
    Ok(r)
}

/// The results as Markdown: setup, training, per-dataset table and means.
pub fn markdown(r: &FinetuneResults) -> String {
    let mut s = format!(
        "Block 4 fine-tuned on the trunk cache · scenario {} · loss {} · dataset BN {} · FDR β {} · lr {:.1e} · batch {}\n\n`{}`\n\n",
        r.scenario,
        r.loss,
        r.dataset_bn,
        r.fdr_beta.map(|b| b.to_string()).unwrap_or_else(|| "off".into()),
        r.lr,
        r.batch,
        r.command
    );
    let _ = writeln!(
        s,
        "Trained on {} source groups ({} held out), {} epochs, best validation loss {:.4}, {:.0} s, {:.1} samples/s.\n",
        r.trained_groups.len(),
        r.held_out_groups.len(),
        r.epochs.len(),
        r.best_val_loss,
        r.train_seconds,
        r.samples_per_s
    );
    if r.rows.is_empty() {
        return s;
    }
    s.push_str("| dataset | group | encoder saw it | frozen macro-F1 | fine-tuned macro-F1 | frozen DBI | fine-tuned DBI | test windows |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    let mut names: Vec<&str> = r.rows.iter().map(|x| x.dataset.as_str()).collect();
    names.dedup();
    for n in names {
        let get = |m: &str| r.rows.iter().find(|x| x.dataset == n && x.model == m);
        if let (Some(a), Some(b)) = (get("frozen aiSFX"), get("fine-tuned")) {
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {:.3} | {:.3} | {:.2} | {:.2} | {} |",
                a.group,
                if a.seen { "yes" } else { "no" },
                a.macro_f1,
                b.macro_f1,
                a.davies_bouldin,
                b.davies_bouldin,
                a.test_windows
            );
        }
    }
    for (min_windows, what) in [
        (1, String::new()),
        (
            MIN_TEST_WINDOWS,
            format!(", ≥ {MIN_TEST_WINDOWS} test windows"),
        ),
    ] {
        for (label, seen) in [
            ("all", None),
            ("seen groups", Some(true)),
            ("held-out groups", Some(false)),
        ] {
            let m = |model, f| mean(r, model, seen, min_windows, f);
            let _ = writeln!(
                s,
                "| **mean, {label}{what}** ({} datasets) | | | {:.3} | {:.3} | {:.2} | {:.2} | |",
                count(r, seen, min_windows),
                m("frozen aiSFX", |x| x.macro_f1),
                m("fine-tuned", |x| x.macro_f1),
                m("frozen aiSFX", |x| x.davies_bouldin),
                m("fine-tuned", |x| x.davies_bouldin),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_alternate_and_cover_every_group() {
        let g: BTreeSet<String> = ["d", "a", "c", "b", "e"].map(String::from).into();
        let [a, b] = encoder_halves(&g);
        assert_eq!(a, ["a", "c", "e"]);
        assert_eq!(b, ["b", "d"]);
    }

    fn row(dataset: &str, seen: bool, model: &str, f1: f64, windows: usize) -> EvalRow {
        EvalRow {
            dataset: dataset.into(),
            group: dataset.into(),
            seen,
            model: model.into(),
            macro_f1: f1,
            davies_bouldin: 0.5,
            test_windows: windows,
        }
    }

    #[test]
    fn means_leave_out_tiny_test_splits_and_compare_lists_every_run() {
        let r = FinetuneResults {
            command: "finetune".into(),
            scenario: "XJoint".into(),
            loss: "ce".into(),
            dataset_bn: false,
            fdr_beta: None,
            lr: 1e-4,
            batch: 64,
            train_half: Some(0),
            trained_groups: vec!["a".into()],
            held_out_groups: vec!["b".into(), "c".into()],
            heads: vec![],
            dropped: vec![],
            epochs: vec![(1, 2.0, 1.5), (2, 1.0, 1.2), (3, 0.5, 1.3)],
            best_val_loss: 1.2,
            train_seconds: 60.0,
            samples_per_s: 100.0,
            rows: vec![
                row("a", true, "frozen aiSFX", 0.4, 30),
                row("a", true, "fine-tuned", 0.6, 30),
                row("b", false, "frozen aiSFX", 0.5, 20),
                row("b", false, "fine-tuned", 0.7, 20),
                // One test window: 1.0 by chance, left out of the scored means.
                row("c", false, "frozen aiSFX", 1.0, 1),
                row("c", false, "fine-tuned", 1.0, 1),
            ],
        };
        assert!((mean(&r, "fine-tuned", Some(false), 1, |x| x.macro_f1) - 0.85).abs() < 1e-9);
        assert!((mean(&r, "fine-tuned", Some(false), 10, |x| x.macro_f1) - 0.7).abs() < 1e-9);
        assert_eq!(count(&r, None, MIN_TEST_WINDOWS), 2);
        assert_eq!(best_epoch(&r), Some(2));
        assert_eq!(kebab("UcsTransfer"), "ucs-transfer");
        let t = compare(&[("one".into(), r.clone()), ("two".into(), r.clone())]);
        assert!(t.contains("| one | x-joint | ce | no | off | 3 (2) | 60 | 100.0 | 0.400 → 0.600 (1) | 0.500 → 0.700 (1) | 0.450 → 0.650 (2) |"), "{t}");
        assert!(t.contains("| two |"));
        // NaN scores go out as null and come back as NaN.
        let mut n = r.clone();
        n.rows[0].davies_bouldin = f64::NAN;
        let back: FinetuneResults =
            serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert!(back.rows[0].davies_bouldin.is_nan());
        assert!(markdown(&r).contains(
            "**mean, held-out groups, ≥ 10 test windows** (1 datasets) | | | 0.500 | 0.700 |"
        ));
    }
}
