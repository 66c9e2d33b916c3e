//! The shipped heads: the evaluation's winning recipe trained on every source, the z-score
//! folded into the first layer (the graph's heads read the raw embedding), written into the
//! aiSFX encoder's graph by `export` (int8 + fp32, gated as any export), with the calibration,
//! per-class thresholds and leave-one-source-out numbers in the manifest, a kNN reference set
//! of the whole corpus, a NOTICE with the licence policy and the corpus ATTRIBUTION.

use super::embed::pick_windows;
use super::eval::{fold_mlp, mean_of, EvalReport, Method, Setup};
use super::mlp::{Mlp, MlpConfig};
use crate::corpus::CorpusIndex;
use crate::prepare;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sfxtag_core::frontend::model_windows;
use sfxtag_core::manifest::{
    HeadCalibration, KnnSpec, LabelQuality, Manifest, Taxonomy, MANIFEST_FILE,
};
use sfxtag_export::{calib_set, export_model_split, ExportOptions, Head, HeadLabels, Linear};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Name of the Category head in the graph and manifest.
pub const CATEGORY_HEAD: &str = "category";
/// Name of the CatID head.
pub const CATID_HEAD: &str = "catid";
/// File of the corpus reference set in the model directory.
pub const REFS_FILE: &str = "refs.json";
/// Reference clips per CatID in that set (evenly chosen).
pub const REFS_PER_CATID: usize = 30;
/// Neighbours of the shipped kNN.
pub const REFS_K: usize = 10;
/// Held-out corpus windows for the int8 gates.
const GATE_WINDOWS: usize = 48;
/// Corpus windows beside the calibration audio for the int8 activation ranges: the fixtures
/// alone leave ranges that some real windows exceed (measured: worst-window int8/fp32 cosine
/// 0.963 on corpus windows with fixture-only calibration).
const CALIB_WINDOWS: usize = 300;

/// What `heads --export` writes.
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub out: PathBuf,
    pub aisfx_checkpoint: PathBuf,
    /// Calibration audio of the int8 encoder (sorted files).
    pub calib: Vec<PathBuf>,
    pub version: String,
    pub overwrite: bool,
    pub mlp: MlpConfig,
    /// The command line, recorded in the manifest.
    pub command: String,
    pub cache: PathBuf,
}

/// The model directory's licence policy.
pub const NOTICE: &str = "\
models/default — what is in it, and under which terms

Encoder (encoder.onnx, encoder.fp32.onnx, the convolutional layers): a conversion of the aiSFX
encoder released by Alison B. Ma and Alexander Lerch with the paper \"Representation learning
for the automatic indexing of sound effects libraries\" (ISMIR 2022), aisfx 0.1.2 on PyPI,
licensed Creative Commons Attribution 4.0 (CC BY 4.0). Changes: BatchNorm folded, cross-layer
equalisation, int8 quantisation, the nine unlabelled aiSFX heads replaced by the two heads below.

Heads (the `category` and `catid` outputs) and the reference set (refs.json): trained on, and
computed from, the freely licensed sound effects listed in ATTRIBUTION (Debian packages; every
file with its package, version and licence). No audio ships here: the heads are weights fitted
to the corpus, the references are 512-number summaries of single windows.

Licence policy. The corpus mixes CC0, public-domain, CC BY, CC BY-SA, GPL, LGPL and similar
licences (ATTRIBUTION names each file's). Whether trained weights are a derivative of their
training audio is unsettled, so this project treats them as one: the heads and refs.json are
offered under CC BY-SA 4.0 together with the terms of every source licence in ATTRIBUTION
(for the GPL sources, the corresponding source is public: the Debian source packages, and the
reviewed tables and trainer that turn them into these weights). The encoder stays under CC BY
4.0 (credit: Ma & Lerch). Redistribute the directory as a whole, with NOTICE and ATTRIBUTION.
Weights free of share-alike and copyleft terms can be retrained from the permissively licensed
sources alone: see `sfxtag-train corpus fetch --packages`.
";

/// Folds `z = (x − mean) / std` into the first layer: `W' = W / std`, `b' = b − W (mean / std)`.
pub fn fold_zscore(layers: &[(Vec<f32>, Vec<f32>)], mean: &[f32], std: &[f32]) -> [Linear; 3] {
    let d_in = mean.len();
    let linear = |(w, b): &(Vec<f32>, Vec<f32>), first: bool| {
        let out = b.len();
        let inn = w.len() / out;
        if !first {
            return Linear {
                weight: sfxtag_export::weights::Array::new(vec![out, inn], w.clone()),
                bias: b.clone(),
            };
        }
        assert_eq!(inn, d_in, "first layer reads the embedding");
        let mut w2 = w.clone();
        let mut b2 = b.clone();
        for o in 0..out {
            for i in 0..inn {
                let v = w[o * inn + i];
                w2[o * inn + i] = v / std[i];
                b2[o] -= v * mean[i] / std[i];
            }
        }
        Linear {
            weight: sfxtag_export::weights::Array::new(vec![out, inn], w2),
            bias: b2,
        }
    };
    [
        linear(&layers[0], true),
        linear(&layers[1], false),
        linear(&layers[2], false),
    ]
}

/// Trains the final heads, exports the model and completes its manifest. Returns a summary.
pub fn fit(opts: &FitOptions, setup: &Setup, report: &EvalReport) -> Result<String> {
    let method = Method::from_name(&report.default_method)
        .filter(|m| m.exportable())
        .context("the evaluation chose no exportable method")?;
    if setup.lab.categories != report.categories || setup.lab.catids != report.catids {
        bail!("the evaluation's classes differ from the corpus' now (it changed since): evaluate again");
    }
    if !setup.exportable_features() {
        bail!(
            "the heads read {}-wide rows; the exported encoder gives its {}-wide embedding \
             (export from the embeddings of `embed`, not of `embed --from-trunk --pool`)",
            setup.clean.dim,
            setup.emb_dim
        );
    }
    let lab = &setup.lab;
    let all: Vec<usize> = (0..lab.clips.len()).collect();

    let cfg = MlpConfig {
        seed: opts.mlp.seed + super::eval::WHOLE_CORPUS_SEED,
        ..opts.mlp.clone()
    };
    let no_group = usize::MAX;
    let cat_head = fold_mlp(
        setup,
        &all,
        lab.categories.len(),
        |c| lab.clips[c].category,
        no_group,
        method.recipe(),
        &cfg,
    )?;
    let catid_head = fold_mlp(
        setup,
        &all,
        lab.catids.len(),
        |c| lab.clips[c].catid,
        no_group,
        Method::MlpNoise.recipe(),
        &cfg,
    )?;
    let (cal, held) = export_windows(opts)?;
    // The heads were trained on embeddings z-scored with the statistics of the model that
    // made them; the graph feeds its heads the raw embedding, so those statistics (not the
    // exported model's own, which describe its published embeddings) fold into the first layer.
    let (mean, std) = (&setup.zscore_mean, &setup.zscore_std);
    let mut weights = crate::trunk::load_weights(&opts.aisfx_checkpoint)?;
    let head = |name: &str, m: &Mlp| Head {
        name: name.into(),
        layers: fold_zscore(&m.layers(), mean, std),
    };
    weights.heads = vec![
        head(CATEGORY_HEAD, &cat_head),
        head(CATID_HEAD, &catid_head),
    ];
    let mut head_labels = BTreeMap::new();
    head_labels.insert(
        CATEGORY_HEAD.to_string(),
        HeadLabels {
            taxonomy: Taxonomy::UcsCategory,
            labels: lab.categories.clone(),
        },
    );
    head_labels.insert(
        CATID_HEAD.to_string(),
        HeadLabels {
            taxonomy: Taxonomy::UcsCatId,
            labels: lab.catids.clone(),
        },
    );
    let attribution = std::fs::read(opts.cache.join(crate::corpus::ATTRIBUTION_FILE))
        .context("the corpus ATTRIBUTION file is missing (run `sfxtag-train corpus fetch`)")?;
    let clean_mean = report.mean_top1(method, "clean").unwrap_or(0.0);
    let eo = ExportOptions {
        id: "sfxtag-ucs".into(),
        version: opts.version.clone(),
        description: format!(
            "aiSFX encoder with UCS Category ({}) and CatID ({}) heads trained on CPU on {} freely licensed clips from {} sources",
            lab.categories.len(),
            lab.catids.len(),
            lab.clips.len(),
            lab.groups.len()
        ),
        license: "CC-BY-4.0 AND CC-BY-SA-4.0".into(),
        attribution: format!(
            "{}; heads and references trained on the sources listed in ATTRIBUTION",
            sfxtag_export::aisfx::ATTRIBUTION
        ),
        provenance: sfxtag_core::manifest::Provenance {
            source: format!("aisfx 0.1.2 checkpoint + heads from `{}`", opts.command),
            training_data: format!(
                "{} distinct clips (duplicates removed) of {} source groups, reviewed UCS tables train/corpus/*.csv",
                lab.clips.len(),
                lab.groups.len()
            ),
            scenario: {
                let [h1, h2] = cat_head.widths();
                let ens = match opts.mlp.ensemble {
                    0 | 1 => String::new(),
                    k => format!(" ({k} heads merged)"),
                };
                let input = match setup.features {
                    super::eval::Features::Embedding => "512 (embedding)",
                    super::eval::Features::EmbeddingBlock3 => {
                        "1024 (embedding + block 3's pooled features)"
                    }
                };
                let floor = if !super::embed::keeps_every_window(setup.silence_floor_dbfs) {
                    format!(", windows below {} dBFS left out", setup.silence_floor_dbfs)
                } else {
                    String::new()
                };
                format!(
                    "frozen aiSFX encoder; MLP heads {input}-{h1}-{h2}-C{ens}, recipe {}{floor}",
                    report.default_method
                )
            },
            exported_by: format!("sfxtag-train {}", env!("CARGO_PKG_VERSION")),
            metrics: vec![sfxtag_core::manifest::Metric {
                name: "loso_category_top1_mean".into(),
                value: clean_mean,
                command: opts.command.clone(),
            }],
        },
        head_labels,
        overwrite: opts.overwrite,
        extra_files: vec![
            ("NOTICE".into(), NOTICE.as_bytes().to_vec()),
            ("ATTRIBUTION".into(), attribution),
        ],
        ..Default::default()
    };
    let rep = export_model_split(&weights, &eo, &cal, &held, &opts.out)
        .with_context(|| format!("exporting to {}", opts.out.display()))?;
    // The shipped graph must compute the trained head: its Category logits on held-out windows
    // are the MLP's on the same windows' features, z-scored as in training.
    let fp32 = sfxtag_export::TractModel::from_bytes(&std::fs::read(
        opts.out.join(sfxtag_export::export::FP32_FILE),
    )?)?;
    let logits = sfxtag_export::graph::logits_name(CATEGORY_HEAD);
    let (ei, li) = (
        fp32.output_index(sfxtag_export::graph::EMBEDDING)
            .context("the fp32 graph has no embedding output")?,
        fp32.output_index(&logits)
            .with_context(|| format!("the fp32 graph has no {logits} output"))?,
    );
    let b3 = match setup.features {
        super::eval::Features::Embedding => None,
        super::eval::Features::EmbeddingBlock3 => Some(
            fp32.output_index(sfxtag_export::graph::BLOCK3)
                .context("the fp32 graph has no block3 output")?,
        ),
    };
    let mut worst = 0f32;
    for w in held.iter().take(32) {
        let o = fp32.run(w)?;
        let z: Vec<f32> = o[ei]
            .iter()
            .chain(b3.map_or(&[][..], |b| &o[b]))
            .zip(mean)
            .zip(std)
            .map(|((x, m), s)| (x - m) / s)
            .collect();
        for (a, b) in o[li].iter().zip(cat_head.logits(&z)) {
            worst = worst.max((a - b).abs());
        }
    }
    if worst > 1e-2 {
        bail!(
            "the exported Category head differs from the trained one (logits off by up to {worst})"
        );
    }
    // Complete the manifest: calibration, thresholds, label quality, the reference set.
    let mut m: Manifest = rep.manifest.clone();
    let (t_cat, t_id) = (
        report.calibration.get(method.name()).map_or(1.0, |x| x.2),
        if report.catid_temperature > 0.0 {
            report.catid_temperature
        } else {
            1.0
        },
    );
    for h in m.heads.iter_mut() {
        let (t, thresholds) = if h.name == CATEGORY_HEAD {
            (t_cat, report.thresholds.clone())
        } else {
            (t_id, Vec::new())
        };
        h.calibration = Some(HeadCalibration {
            method: "temperature".into(),
            temperature: t,
            fitted_on: "window logits of held-out sources (leave-one-source-out)".into(),
        });
        h.thresholds = thresholds;
        if h.name == CATEGORY_HEAD {
            h.train_prior =
                super::eval::training_prior(lab, None, lab.categories.len(), opts.mlp.class_power);
        }
    }
    let mut metrics = BTreeMap::new();
    if let Some(v) = report.scores.get(&report.default_method) {
        for (variant, per) in v {
            metrics.insert(
                format!("category_top1_mean_{variant}"),
                mean_of(per, |s| s.top1),
            );
            metrics.insert(
                format!("category_top3_mean_{variant}"),
                mean_of(per, |s| s.top3),
            );
            metrics.insert(
                format!("category_macro_f1_mean_{variant}"),
                mean_of(per, |s| s.macro_f1),
            );
            metrics.insert(
                format!("category_selective_accuracy_50_{variant}"),
                mean_of(per, |s| s.sel50),
            );
            metrics.insert(
                format!("category_selective_accuracy_80_{variant}"),
                mean_of(per, |s| s.sel80),
            );
        }
    }
    // Each held-out source as one batch (`sfxtag classify --batch-priors`, its default strength).
    if let Some(v) = report
        .adapted
        .get(&format!("{}", sfxtag_core::priors::DEFAULT_STRENGTH))
        .and_then(|m| m.get(&report.default_method))
    {
        for (variant, per) in v {
            metrics.insert(
                format!("category_top1_mean_{variant}_batch_priors"),
                mean_of(per, |s| s.top1),
            );
        }
    }
    if let Some(a) = report.mean_top1(Method::ShippedKnn, "clean") {
        metrics.insert("baseline_shipped_knn_top1_mean_clean".into(), a);
    }
    if !report.catid.is_empty() {
        metrics.insert(
            "catid_top1_mean_clean".into(),
            report.catid.values().map(|x| x.1).sum::<f64>() / report.catid.len() as f64,
        );
    }
    metrics.insert("folds".into(), report.folds.len() as f64);
    if let Some(q) = m.quality.as_mut() {
        q.labels = Some(LabelQuality {
            protocol: format!(
                "leave-one-source-out over {} source groups, file level (mean of window posteriors); noisy = mixed with another source's ambience at 10 dB SNR",
                report.folds.len()
            ),
            command: opts.command.clone(),
            metrics,
        });
    }
    let refs = corpus_refs(setup, &m)?;
    let refs_bytes = refs.into_bytes();
    std::fs::write(opts.out.join(REFS_FILE), &refs_bytes)?;
    m.files.insert(
        REFS_FILE.into(),
        sfxtag_core::manifest::sha256_hex(&refs_bytes),
    );
    m.knn = Some(KnnSpec {
        file: REFS_FILE.into(),
        taxonomy: Taxonomy::UcsCatId,
        k: REFS_K,
    });
    m.validate()?;
    let tmp = opts.out.join(format!("{MANIFEST_FILE}.tmp"));
    std::fs::write(&tmp, m.to_toml())?;
    std::fs::rename(&tmp, opts.out.join(MANIFEST_FILE))?;
    Manifest::load(&opts.out).context("the written model does not load back")?;
    let mut s = rep.summary();
    let _ = writeln!(
        s,
        "heads: {CATEGORY_HEAD} ({} Categories, T = {t_cat:.2}), {CATID_HEAD} ({} CatIDs, T = {t_id:.2}); {REFS_FILE}: {} references",
        lab.categories.len(),
        lab.catids.len(),
        refs_count(&opts.out)?
    );
    Ok(s)
}

type Windows = Vec<Box<sfxtag_core::frontend::ModelWindow>>;

/// Calibration and held-out windows of the export: the calibration audio split as
/// `sfxtag-export` splits it, plus corpus windows on both sides (different clips).
fn export_windows(opts: &FitOptions) -> Result<(Windows, Windows)> {
    let set = calib_set::split(&opts.calib, 4, 400);
    if set.cal.is_empty() {
        bail!("no calibration windows from {:?}", opts.calib);
    }
    let (mut cal, mut held) = (set.cal, set.held);
    let (c, h) = corpus_windows(&opts.cache, CALIB_WINDOWS, GATE_WINDOWS)?;
    cal.extend(c);
    held.extend(h);
    Ok((cal, held))
}

/// The middle window of evenly chosen corpus clips: about `cal` of them for calibration and
/// `held` others (different clips) for the gates.
fn corpus_windows(cache: &std::path::Path, cal: usize, held: usize) -> Result<(Windows, Windows)> {
    let index = CorpusIndex::load(cache)?;
    let (mut c, mut h) = (Vec::new(), Vec::new());
    let n = index.datasets.len().max(1);
    let per = (cal + held) / n + 1;
    for d in &index.datasets {
        let ds = prepare::load_prepared(cache, &d.name)?;
        for (k, i) in pick_windows(ds.clips.len(), per).into_iter().enumerate() {
            let w = model_windows(&ds.clips[i].mel);
            let Some(mid) = w.get(w.len() / 2) else {
                continue;
            };
            // Every (cal + held) / held-th clip is held out.
            if held > 0 && k % ((cal + held) / held).max(2) == 1 {
                h.push(mid.clone());
            } else {
                c.push(mid.clone());
            }
        }
    }
    Ok((c, h))
}

/// The corpus reference set: one window per clip (the middle one), at most [`REFS_PER_CATID`]
/// clips per CatID, z-scored with the model's statistics, labelled with the clip's CatID.
fn corpus_refs(setup: &Setup, m: &Manifest) -> Result<String> {
    let (mean, std) = (&m.encoder.embedding_mean, &m.encoder.embedding_std);
    let mut by_catid: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in setup.clean.clips.iter().enumerate() {
        if let Some(id) = &c.ucs_catid {
            if c.windows > 0 {
                by_catid.entry(id.clone()).or_default().push(i);
            }
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut entries = Vec::new();
    for (id, clips) in &by_catid {
        for k in pick_windows(clips.len(), REFS_PER_CATID) {
            let c = &setup.clean.clips[clips[k]];
            let row = c.first + c.windows / 2;
            let z: Vec<u8> = setup
                .clean
                .row(row)
                .iter()
                .zip(mean)
                .zip(std)
                .flat_map(|((x, mu), s)| ((x - mu) / s).to_le_bytes())
                .collect();
            entries.push(serde_json::json!({
                "label": id,
                "source": format!("{}:{}", c.dataset, c.rel_path),
                "window": c.windows / 2,
                "embedding": b64.encode(z),
            }));
        }
    }
    let doc = serde_json::json!({
        "format": "sfxtag-refs",
        "version": 1,
        "model": m.model.id,
        "model_version": m.model.version,
        "taxonomy": "ucs-catid",
        "dim": m.encoder.embedding_dim,
        "zscored": true,
        "entries": entries,
    });
    Ok(serde_json::to_string(&doc)?)
}

fn refs_count(dir: &std::path::Path) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(REFS_FILE))?)?;
    Ok(v["entries"].as_array().map_or(0, Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_the_zscore_gives_the_same_logits() {
        // A 3-d "embedding", a head whose first layer is 2 × 3.
        let w0 = vec![1.0, -2.0, 0.5, 0.0, 3.0, -1.0];
        let b0 = vec![0.1, -0.2];
        let layers = vec![
            (w0.clone(), b0.clone()),
            (vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 0.0]),
            (vec![1.0, 1.0], vec![0.0]),
        ];
        let (mean, std) = ([0.5f32, -1.0, 2.0], [2.0f32, 0.5, 4.0]);
        let folded = fold_zscore(&layers, &mean, &std);
        let x = [1.5f32, 0.25, -3.0];
        for o in 0..2 {
            let direct: f32 = (0..3)
                .map(|i| w0[o * 3 + i] * (x[i] - mean[i]) / std[i])
                .sum::<f32>()
                + b0[o];
            let via: f32 = (0..3)
                .map(|i| folded[0].weight.data[o * 3 + i] * x[i])
                .sum::<f32>()
                + folded[0].bias[o];
            assert!((direct - via).abs() < 1e-5, "{direct} vs {via}");
        }
        assert_eq!(folded[2].bias, vec![0.0]);
    }
}
