//! The training loop of the paper (§4–5, architecture.md §8): random 2.3 s crops drawn at every batch,
//! batch 64, Adam, early stopping on validation loss (mean over datasets in cross-dataset
//! scenarios) with the best weights kept, joint CE + metric loss, class-balanced batches for
//! metric losses, one head per dataset, optional dataset-specific BatchNorm and focal dataset
//! reweighting, and the four scenarios `within`, `ucs-transfer`, `x-sequential`, `x-joint`.

use crate::fdr;
use crate::losses::{JointLoss, MetricLoss};
use crate::metrics;
use crate::model::{Cnn9, DatasetHead};
use crate::sampler;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sfxtag_core::frontend::{normalise, window_count, MelFrame, N_MELS, WINDOW_FRAMES, WINDOW_HOP};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use thiserror::Error;

/// One clip: its log-mel frames (as `core::frontend` computes them) and its class index.
#[derive(Debug, Clone)]
pub struct Clip {
    pub frames: Vec<MelFrame>,
    pub label: usize,
}

/// One dataset with its own taxonomy, split 8:1:1.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub classes: Vec<String>,
    pub train: Vec<Clip>,
    pub val: Vec<Clip>,
    pub test: Vec<Clip>,
}

/// How datasets are combined (paper §5.1–5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Train and evaluate on each dataset alone (the first dataset given).
    Within,
    /// Train on the UCS-labelled dataset(s) only, evaluate the frozen encoder on all.
    UcsTransfer,
    /// Datasets one after another, each to early stopping.
    XSequential,
    /// All datasets at once, every batch from one dataset.
    XJoint,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "within" => Ok(Scenario::Within),
            "ucs-transfer" => Ok(Scenario::UcsTransfer),
            "x-sequential" => Ok(Scenario::XSequential),
            "x-joint" => Ok(Scenario::XJoint),
            _ => Err(format!(
                "unknown scenario '{s}': use within, ucs-transfer, x-sequential or x-joint"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub scenario: Scenario,
    pub loss: MetricLoss,
    pub metric_weight: f64,
    pub regularface_weight: f64,
    pub dataset_bn: bool,
    /// β of focal dataset reweighting; `None` disables it.
    pub fdr_beta: Option<f64>,
    pub lr: f64,
    pub batch: usize,
    pub steps_per_epoch: usize,
    pub max_epochs: usize,
    pub patience: usize,
    pub seed: u64,
    pub device: Device,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            scenario: Scenario::XJoint,
            loss: MetricLoss::None,
            metric_weight: 1.0,
            regularface_weight: 0.1,
            dataset_bn: false,
            fdr_beta: None,
            lr: 1e-3,
            batch: 64,
            steps_per_epoch: 100,
            max_epochs: 100,
            patience: 5,
            seed: 0,
            device: Device::cuda_if_available(),
        }
    }
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("no datasets to train on")]
    NoDatasets,
    #[error("dataset '{0}' has only one class: a classifier needs at least two")]
    OneClass(String),
    #[error("dataset '{dataset}' has an empty {split} split")]
    EmptySplit {
        dataset: String,
        split: &'static str,
    },
    #[error("clip {clip} of dataset '{dataset}' has label {label}, but the dataset has {classes} classes")]
    BadLabel {
        dataset: String,
        clip: usize,
        label: usize,
        classes: usize,
    },
    #[error("the ucs-transfer scenario needs a dataset whose name starts with 'ucs'")]
    NoUcsDataset,
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Per-epoch record.
#[derive(Debug, Clone)]
pub struct EpochLog {
    pub epoch: usize,
    pub dataset: Option<String>,
    pub train_loss: f64,
    pub val_loss: f64,
}

/// A trained model and its history.
pub struct Trained {
    pub vs: nn::VarStore,
    pub model: Cnn9,
    pub history: Vec<EpochLog>,
    pub best_val_loss: f64,
}

fn validate(datasets: &[Dataset]) -> Result<(), TrainError> {
    if datasets.is_empty() {
        return Err(TrainError::NoDatasets);
    }
    for d in datasets {
        if d.classes.len() < 2 {
            return Err(TrainError::OneClass(d.name.clone()));
        }
        for (split, clips) in [
            ("train", &d.train),
            ("validation", &d.val),
            ("test", &d.test),
        ] {
            if clips.is_empty() {
                return Err(TrainError::EmptySplit {
                    dataset: d.name.clone(),
                    split,
                });
            }
            if let Some((clip, c)) = clips
                .iter()
                .enumerate()
                .find(|(_, c)| c.label >= d.classes.len())
            {
                return Err(TrainError::BadLabel {
                    dataset: d.name.clone(),
                    clip,
                    label: c.label,
                    classes: d.classes.len(),
                });
            }
        }
    }
    Ok(())
}

/// A normalised 100-frame window of `clip` starting at `start` (zero-padded past the end).
fn window(clip: &Clip, start: usize, out: &mut Vec<f32>) {
    for t in 0..WINDOW_FRAMES {
        match clip.frames.get(start + t) {
            Some(f) => out.extend(f.iter().map(|&x| normalise(x))),
            None => out.extend(std::iter::repeat_n(0.0, N_MELS)),
        }
    }
}

fn batch_tensor(clips: &[&Clip], starts: &[usize], device: Device) -> Tensor {
    let mut buf = Vec::with_capacity(clips.len() * WINDOW_FRAMES * N_MELS);
    for (c, &s) in clips.iter().zip(starts) {
        window(c, s, &mut buf);
    }
    Tensor::from_slice(&buf)
        .view([clips.len() as i64, 1, WINDOW_FRAMES as i64, N_MELS as i64])
        .to_device(device)
}

/// Mean validation CE over every clip's first window.
fn val_loss(model: &Cnn9, d: &Dataset, ds: usize, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut total = 0.0;
    for chunk in d.val.chunks(64) {
        let refs: Vec<&Clip> = chunk.iter().collect();
        let x = batch_tensor(&refs, &vec![0; refs.len()], device);
        let y = Tensor::from_slice(&chunk.iter().map(|c| c.label as i64).collect::<Vec<_>>())
            .to_device(device);
        let logits = model.logits(&model.embed(&x, ds, false), ds);
        total += logits.cross_entropy_for_logits(&y).double_value(&[]) * chunk.len() as f64;
    }
    total / d.val.len() as f64
}

/// Trains per `cfg`; `progress` gets one line per epoch.
pub fn train(
    datasets: &[Dataset],
    cfg: &TrainConfig,
    mut progress: impl FnMut(&EpochLog),
) -> Result<Trained, TrainError> {
    validate(datasets)?;
    tch::manual_seed(cfg.seed as i64);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    // Which datasets train the encoder.
    let active: Vec<usize> = match cfg.scenario {
        Scenario::Within => vec![0],
        Scenario::UcsTransfer => {
            let v: Vec<usize> = (0..datasets.len())
                .filter(|&i| datasets[i].name.starts_with("ucs"))
                .collect();
            if v.is_empty() {
                return Err(TrainError::NoUcsDataset);
            }
            v
        }
        Scenario::XSequential | Scenario::XJoint => (0..datasets.len()).collect(),
    };
    let heads: Vec<DatasetHead> = datasets
        .iter()
        .map(|d| DatasetHead {
            name: d.name.clone(),
            n_classes: d.classes.len() as i64,
        })
        .collect();
    let vs = nn::VarStore::new(cfg.device);
    let model = Cnn9::new(&vs.root(), &heads, cfg.dataset_bn);
    let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;
    let joint = JointLoss {
        metric: cfg.loss,
        metric_weight: cfg.metric_weight,
        reg_weight: cfg.regularface_weight,
    };
    let mut weights = vec![1.0f64; datasets.len()];
    let mut history = Vec::new();
    let mut best = f64::INFINITY;
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    // x-sequential trains stage by stage; the others in one stage with all active datasets.
    let stages: Vec<Vec<usize>> = match cfg.scenario {
        Scenario::XSequential => active.iter().map(|&d| vec![d]).collect(),
        _ => vec![active.clone()],
    };
    let mut epoch = 0;
    for stage in &stages {
        let mut stage_best = f64::INFINITY;
        let mut since_best = 0;
        for _ in 0..cfg.max_epochs {
            epoch += 1;
            let schedule = sampler::joint_schedule(
                &stage
                    .iter()
                    .map(|_| cfg.steps_per_epoch.div_ceil(stage.len()))
                    .collect::<Vec<_>>(),
                &mut rng,
            );
            let mut train_loss = 0.0;
            for &slot in &schedule {
                let ds = stage[slot];
                let d = &datasets[ds];
                let labels: Vec<usize> = d.train.iter().map(|c| c.label).collect();
                let idx = if cfg.loss == MetricLoss::None {
                    let mut b = sampler::shuffled_batches(labels.len(), cfg.batch, &mut rng);
                    b.swap_remove(0)
                } else {
                    // 4 per class × (batch / 4) classes: 16 × 4 at batch 64.
                    sampler::balanced_batch(&labels, (cfg.batch / 4).max(2), 4, &mut rng)
                };
                let clips: Vec<&Clip> = idx.iter().map(|&i| &d.train[i]).collect();
                let starts: Vec<usize> = clips
                    .iter()
                    .map(|c| sampler::crop_start(c.frames.len(), WINDOW_FRAMES, &mut rng))
                    .collect();
                let x = batch_tensor(&clips, &starts, cfg.device);
                let y =
                    Tensor::from_slice(&clips.iter().map(|c| c.label as i64).collect::<Vec<_>>())
                        .to_device(cfg.device);
                let emb = model.embed(&x, ds, true);
                let logits = model.logits(&emb, ds);
                let classifier = vs
                    .variables()
                    .get(&format!("head.{}.fc2.weight", d.name))
                    .map(Tensor::shallow_clone);
                let loss = joint.compute(&logits, &emb, &y, classifier.as_ref()) * weights[ds];
                opt.backward_step(&loss);
                train_loss += loss.double_value(&[]) / schedule.len() as f64;
            }
            let vals: Vec<f64> = stage
                .iter()
                .map(|&ds| val_loss(&model, &datasets[ds], ds, cfg.device))
                .collect();
            let val = vals.iter().sum::<f64>() / vals.len() as f64;
            let log = EpochLog {
                epoch,
                dataset: (stage.len() == 1).then(|| datasets[stage[0]].name.clone()),
                train_loss,
                val_loss: val,
            };
            progress(&log);
            history.push(log);
            if val < stage_best {
                stage_best = val;
                since_best = 0;
                best_weights = Some(
                    vs.variables()
                        .into_iter()
                        .map(|(k, v)| (k, v.detach().copy()))
                        .collect(),
                );
            } else {
                since_best += 1;
                if since_best >= cfg.patience {
                    break;
                }
            }
        }
        best = stage_best;
        // Focal dataset reweighting needs convergence epochs; with one stage per dataset (or
        // a joint stage) we update weights from each dataset's train-split macro-F1 after the
        // stage, so later stages/epochs focus on slower datasets.
        if let Some(beta) = cfg.fdr_beta {
            let epochs: Vec<u32> = (0..datasets.len())
                .map(|ds| {
                    let f1 = train_macro_f1(&model, &datasets[ds], ds, cfg.device);
                    fdr::convergence_epoch(&[f1])
                })
                .collect();
            weights = fdr::weights(&epochs, beta);
        }
    }
    if let Some(w) = best_weights {
        let _guard = tch::no_grad_guard();
        let vars = vs.variables();
        for (k, v) in w {
            if let Some(mut t) = vars.get(&k).map(Tensor::shallow_clone) {
                t.copy_(&v);
            }
        }
    }
    Ok(Trained {
        vs,
        model,
        history,
        best_val_loss: best,
    })
}

fn train_macro_f1(model: &Cnn9, d: &Dataset, ds: usize, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    for chunk in d.train.chunks(64) {
        let refs: Vec<&Clip> = chunk.iter().collect();
        let x = batch_tensor(&refs, &vec![0; refs.len()], device);
        let p = model
            .logits(&model.embed(&x, ds, false), ds)
            .argmax(1, false);
        pred.extend(
            Vec::<i64>::try_from(p.to_device(Device::Cpu))
                .unwrap_or_default()
                .iter()
                .map(|&v| v as usize),
        );
        truth.extend(chunk.iter().map(|c| c.label));
    }
    metrics::macro_f1(&truth, &pred).unwrap_or(0.0)
}

/// Embeddings of every 50 %-overlap window of `clips` (a clip shorter than a window gives one
/// zero-padded window), with the clip label of each window.
pub fn embed_windows(
    model: &Cnn9,
    clips: &[Clip],
    ds: usize,
    device: Device,
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let _guard = tch::no_grad_guard();
    let mut items: Vec<(&Clip, usize)> = Vec::new();
    for c in clips {
        let n = window_count(c.frames.len()).max(1);
        items.extend((0..n).map(|w| (c, w * WINDOW_HOP)));
    }
    let mut emb = Vec::with_capacity(items.len());
    let mut labels = Vec::with_capacity(items.len());
    for chunk in items.chunks(64) {
        let clips: Vec<&Clip> = chunk.iter().map(|(c, _)| *c).collect();
        let starts: Vec<usize> = chunk.iter().map(|(_, s)| *s).collect();
        let e = model
            .embed(&batch_tensor(&clips, &starts, device), ds, false)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float);
        let flat = Vec::<f32>::try_from(e.reshape([-1])).unwrap_or_default();
        emb.extend(flat.chunks(512).map(<[f32]>::to_vec));
        labels.extend(clips.iter().map(|c| c.label));
    }
    (emb, labels)
}

/// The paper's evaluation of one dataset: kNN (k = 5) on z-scored frozen embeddings fit on the
/// train split, macro-F1 on the test split, and the Davies–Bouldin index of the test embeddings.
#[derive(Debug, Clone)]
pub struct DatasetScore {
    pub dataset: String,
    pub macro_f1: f64,
    pub davies_bouldin: f64,
    pub test_windows: usize,
}

pub fn evaluate(
    model: &Cnn9,
    d: &Dataset,
    ds: usize,
    device: Device,
) -> Result<DatasetScore, TrainError> {
    let (train_e, train_l) = embed_windows(model, &d.train, ds, device);
    let (test_e, test_l) = embed_windows(model, &d.test, ds, device);
    let z = metrics::ZScore::fit(&train_e)?;
    let train_z: Vec<Vec<f32>> = train_e.iter().map(|v| z.apply(v)).collect();
    let test_z: Vec<Vec<f32>> = test_e.iter().map(|v| z.apply(v)).collect();
    let pred = metrics::knn_predict(&train_z, &train_l, &test_z, 5)?;
    Ok(DatasetScore {
        dataset: d.name.clone(),
        macro_f1: metrics::macro_f1(&test_l, &pred)?,
        davies_bouldin: metrics::davies_bouldin(&test_z, &test_l).unwrap_or(f64::NAN),
        test_windows: test_e.len(),
    })
}
