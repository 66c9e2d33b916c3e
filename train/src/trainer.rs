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

/// What a clip feeds the model.
#[derive(Debug, Clone)]
pub enum Input {
    /// Log-mel frames (as `core::frontend` computes them): the whole encoder trains on random
    /// 100-frame crops.
    Mel(Vec<MelFrame>),
    /// The clip's windows in a trunk cache (blocks 1–3 already run): block 4 trains on a
    /// randomly chosen one.
    Trunk(TrunkWindows),
}

/// Rows `first..first + n` of a trunk cache.
#[derive(Debug, Clone)]
pub struct TrunkWindows {
    pub rows: std::sync::Arc<crate::trunk::TrunkRows>,
    pub first: usize,
    pub n: usize,
}

/// One clip: its input and its class index.
#[derive(Debug, Clone)]
pub struct Clip {
    pub input: Input,
    pub label: usize,
}

impl Clip {
    /// A clip of log-mel frames.
    pub fn mel(frames: Vec<MelFrame>, label: usize) -> Self {
        Self {
            input: Input::Mel(frames),
            label,
        }
    }

    /// Number of 50 %-overlap windows (at least one).
    fn windows(&self) -> usize {
        match &self.input {
            Input::Mel(f) => window_count(f.len()).max(1),
            Input::Trunk(t) => t.n.max(1),
        }
    }

    /// Where window `w` starts: a frame for mel input, a row for trunk input.
    fn window_at(&self, w: usize) -> usize {
        match &self.input {
            Input::Mel(_) => w * WINDOW_HOP,
            Input::Trunk(_) => w,
        }
    }

    /// A random training crop: any start frame for mel input, any cached window for trunk input.
    fn random_crop(&self, rng: &mut StdRng) -> usize {
        match &self.input {
            Input::Mel(f) => sampler::crop_start(f.len(), WINDOW_FRAMES, rng),
            Input::Trunk(t) => rand::Rng::random_range(rng, 0..t.n.max(1)),
        }
    }

    /// The block the model must start at to take this input.
    fn first_block(&self) -> usize {
        match self.input {
            Input::Mel(_) => 1,
            Input::Trunk(_) => 4,
        }
    }
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
    /// Initial encoder weights (e.g. the released aiSFX encoder); `None` starts from random.
    pub init: Option<std::sync::Arc<sfxtag_export::weights::Cnn9Weights>>,
    /// Stop after the epoch during which this much time has passed (best weights kept).
    pub max_seconds: Option<f64>,
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
            init: None,
            max_seconds: None,
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
    #[error("dataset '{0}' mixes mel clips and trunk-cache clips; use one kind of input")]
    MixedInputs(String),
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
    /// Training samples seen in the epoch and the seconds it took (validation included).
    pub samples: usize,
    pub seconds: f64,
}

impl std::fmt::Display for EpochLog {
    /// `epoch   3 [dataset]: train loss …, validation loss …, … samples/s`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {:>3}", self.epoch)?;
        if let Some(d) = &self.dataset {
            write!(f, " [{d}]")?;
        }
        write!(
            f,
            ": train loss {:.4}, validation loss {:.4}, {:.1} samples/s",
            self.train_loss,
            self.val_loss,
            self.samples as f64 / self.seconds.max(1e-9)
        )
    }
}

/// A trained model and its history.
pub struct Trained {
    pub vs: nn::VarStore,
    pub model: Cnn9,
    pub history: Vec<EpochLog>,
    pub best_val_loss: f64,
}

/// Checks the datasets and returns the block the model starts at (1: mel, 4: trunk cache).
fn validate(datasets: &[Dataset]) -> Result<usize, TrainError> {
    if datasets.is_empty() {
        return Err(TrainError::NoDatasets);
    }
    let first = datasets
        .iter()
        .flat_map(|d| d.train.first())
        .map(Clip::first_block)
        .next()
        .unwrap_or(1);
    for d in datasets {
        if [&d.train, &d.val, &d.test]
            .iter()
            .any(|s| s.iter().any(|c| c.first_block() != first))
        {
            return Err(TrainError::MixedInputs(d.name.clone()));
        }
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
    Ok(first)
}

/// A normalised 100-frame window of `frames` starting at `start` (zero-padded past the end).
fn window(frames: &[MelFrame], start: usize, out: &mut Vec<f32>) {
    for t in 0..WINDOW_FRAMES {
        match frames.get(start + t) {
            Some(f) => out.extend(f.iter().map(|&x| normalise(x))),
            None => out.extend(std::iter::repeat_n(0.0, N_MELS)),
        }
    }
}

/// The model input for window `starts[i]` of `clips[i]` (all clips of one kind).
fn batch_tensor(clips: &[&Clip], starts: &[usize], device: Device) -> Tensor {
    let n = clips.len() as i64;
    match clips.first().map(|c| &c.input) {
        Some(Input::Trunk(_)) => {
            let mut bytes = Vec::new();
            for (c, &s) in clips.iter().zip(starts) {
                let Input::Trunk(t) = &c.input else {
                    unreachable!("validate() keeps one kind of input per model")
                };
                bytes.extend_from_slice(t.rows.row_bytes(t.first + s.min(t.n.max(1) - 1)));
            }
            let [c, h, w] = crate::model::TRUNK_SHAPE;
            Tensor::from_data_size(&bytes, &[n, c, h, w], Kind::Half)
                .to_kind(Kind::Float)
                .to_device(device)
        }
        _ => {
            let mut buf = Vec::with_capacity(clips.len() * WINDOW_FRAMES * N_MELS);
            for (c, &s) in clips.iter().zip(starts) {
                let Input::Mel(f) = &c.input else {
                    unreachable!("validate() keeps one kind of input per model")
                };
                window(f, s, &mut buf);
            }
            Tensor::from_slice(&buf)
                .view([n, 1, WINDOW_FRAMES as i64, N_MELS as i64])
                .to_device(device)
        }
    }
}

/// Most training clips scored per dataset for focal dataset reweighting.
const FDR_CLIPS: usize = 256;

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
    let first_block = validate(datasets)?;
    tch::manual_seed(cfg.seed as i64);
    let started = std::time::Instant::now();
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
    let model = Cnn9::from_block(&vs.root(), &heads, cfg.dataset_bn, first_block);
    if let Some(w) = &cfg.init {
        crate::model::init_encoder(&vs, w)?;
    }
    let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;
    let joint = JointLoss {
        metric: cfg.loss,
        metric_weight: cfg.metric_weight,
        reg_weight: cfg.regularface_weight,
    };
    let mut weights = vec![1.0f64; datasets.len()];
    let mut f1_history: Vec<Vec<f64>> = vec![Vec::new(); datasets.len()];
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
            let epoch_start = std::time::Instant::now();
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
                let starts: Vec<usize> = clips.iter().map(|c| c.random_crop(&mut rng)).collect();
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
                samples: schedule.len() * cfg.batch,
                seconds: epoch_start.elapsed().as_secs_f64(),
            };
            progress(&log);
            history.push(log);
            // Focal dataset reweighting inside a joint stage: each dataset's training macro-F1
            // after every epoch gives its convergence epoch so far (not yet converged: the next
            // one), and the weights follow, so slow datasets gain weight while training runs.
            if let (Some(beta), true) = (cfg.fdr_beta, stage.len() > 1) {
                for &ds in stage {
                    f1_history[ds].push(train_macro_f1(&model, &datasets[ds], ds, cfg.device));
                }
                let epochs: Vec<u32> = stage
                    .iter()
                    .map(|&ds| fdr::convergence_epoch(&f1_history[ds]))
                    .collect();
                for (&ds, w) in stage.iter().zip(fdr::weights(&epochs, beta)) {
                    weights[ds] = w;
                }
            }
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
            if cfg
                .max_seconds
                .is_some_and(|m| started.elapsed().as_secs_f64() >= m)
            {
                break;
            }
        }
        best = stage_best;
        // Sequential stages: after each, every dataset's training macro-F1 sets the weights of
        // the stages that follow.
        if let (Some(beta), true) = (cfg.fdr_beta, stage.len() == 1) {
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

/// Training-split macro-F1 on the first window of up to [`FDR_CLIPS`] clips (evenly spread).
fn train_macro_f1(model: &Cnn9, d: &Dataset, ds: usize, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let step = d.train.len().div_ceil(FDR_CLIPS).max(1);
    let clips: Vec<&Clip> = d.train.iter().step_by(step).collect();
    for chunk in clips.chunks(64) {
        let refs: Vec<&Clip> = chunk.to_vec();
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
        items.extend((0..c.windows()).map(|w| (c, c.window_at(w))));
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
