//! CNN9-max (architecture.md §4): 4 blocks of [conv3×3 (pad 1, no bias) → BatchNorm → ReLU] × 2 with
//! 64/128/256/512 channels, 2×2 max-pool after blocks 1–3, mean over frequency, max over time →
//! 512-d embedding; one `512 → 256 → 128 → C` MLP head per dataset.
//!
//! Variable names follow the safetensors scheme `export` reads (`encoder.block{N}.conv{K}.weight`,
//! `encoder.block{N}.bn{K}.*`, `head.<name>.fc{L}.*`); with dataset-specific BatchNorm the sets
//! are `encoder.block{N}.bnset{D}.bn{K}.*` and [`crate::checkpoint`] picks one set for export.
//!
//! Dataset-specific BatchNorm keeps one BN set per dataset, selected like the head, so each
//! dataset's statistics stay its own while the convolutions are shared.
//!
//! A model may hold only some of the blocks: [`Cnn9::trunk`] is blocks 1–3 (what `trunk` caches)
//! and [`Cnn9::from_block`] with 4 is block 4 plus the heads, trained on the cached trunk on CPU.

use sfxtag_export::weights::Cnn9Weights;
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// Channel widths of the four blocks.
pub const CHANNELS: [i64; 4] = [64, 128, 256, 512];
/// Embedding size.
pub const EMBEDDING_DIM: i64 = 512;
/// Shape of one trunk output (blocks 1–3 after their pooling) for a 100 × 96 window.
pub const TRUNK_SHAPE: [i64; 3] = [256, 12, 12];

/// A dataset the model trains on: its name (head name) and number of classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetHead {
    pub name: String,
    pub n_classes: i64,
}

#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    /// One (bn1, bn2) pair per BN set.
    bns: Vec<(nn::BatchNorm, nn::BatchNorm)>,
}

/// The CNN9-max encoder plus heads.
#[derive(Debug)]
pub struct Cnn9 {
    /// Number (1–4) of the first block held.
    first_block: usize,
    blocks: Vec<Block>,
    heads: Vec<nn::Sequential>,
    pub datasets: Vec<DatasetHead>,
    pub dataset_bn: bool,
}

impl Cnn9 {
    /// Builds the model under `vs`. With `dataset_bn`, every dataset gets its own BN set.
    pub fn new(vs: &nn::Path, datasets: &[DatasetHead], dataset_bn: bool) -> Self {
        Self::with_blocks(vs, datasets, dataset_bn, 1..=4)
    }

    /// Blocks `first..=4` and the heads: its input is the output of block `first - 1`.
    pub fn from_block(
        vs: &nn::Path,
        datasets: &[DatasetHead],
        dataset_bn: bool,
        first: usize,
    ) -> Self {
        Self::with_blocks(vs, datasets, dataset_bn, first..=4)
    }

    /// Blocks 1–3 alone (one BN set, no heads): [`Cnn9::features`] gives the trunk output.
    pub fn trunk(vs: &nn::Path) -> Self {
        Self::with_blocks(vs, &[], false, 1..=3)
    }

    fn with_blocks(
        vs: &nn::Path,
        datasets: &[DatasetHead],
        dataset_bn: bool,
        blocks_held: std::ops::RangeInclusive<usize>,
    ) -> Self {
        assert!(*blocks_held.start() >= 1 && *blocks_held.end() <= 4);
        let conv_cfg = nn::ConvConfig {
            padding: 1,
            bias: false,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Uniform,
                fan: nn::init::FanInOut::FanIn,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        let n_bn = if dataset_bn { datasets.len().max(1) } else { 1 };
        let mut blocks = Vec::new();
        let first = *blocks_held.start();
        let mut c_in = if first == 1 { 1 } else { CHANNELS[first - 2] };
        for (i, &c) in CHANNELS.iter().enumerate() {
            if !blocks_held.contains(&(i + 1)) {
                continue;
            }
            let p = vs / "encoder" / format!("block{}", i + 1);
            let conv1 = nn::conv2d(&p / "conv1", c_in, c, 3, conv_cfg);
            let conv2 = nn::conv2d(&p / "conv2", c, c, 3, conv_cfg);
            let bns = (0..n_bn)
                .map(|k| {
                    let q = if dataset_bn {
                        &p / format!("bnset{k}")
                    } else {
                        p.clone()
                    };
                    (
                        nn::batch_norm2d(&q / "bn1", c, Default::default()),
                        nn::batch_norm2d(&q / "bn2", c, Default::default()),
                    )
                })
                .collect();
            blocks.push(Block { conv1, conv2, bns });
            c_in = c;
        }
        let heads = datasets
            .iter()
            .map(|d| {
                let p = vs / "head" / d.name.as_str();
                nn::seq()
                    .add(nn::linear(
                        &p / "fc0",
                        EMBEDDING_DIM,
                        256,
                        Default::default(),
                    ))
                    .add_fn(|x| x.relu())
                    .add(nn::linear(&p / "fc1", 256, 128, Default::default()))
                    .add_fn(|x| x.relu())
                    .add(nn::linear(&p / "fc2", 128, d.n_classes, Default::default()))
            })
            .collect();
        Self {
            first_block: first,
            blocks,
            heads,
            datasets: datasets.to_vec(),
            dataset_bn,
        }
    }

    /// Number (1–4) of the first block held: 1 takes `[B, 1, 100, 96]` windows, 4 trunk outputs.
    pub fn first_block(&self) -> usize {
        self.first_block
    }

    /// The output of the blocks held (each of blocks 1–3 ends in its 2 × 2 max-pool), using
    /// dataset `ds`'s BN set.
    pub fn features(&self, x: &Tensor, ds: usize, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        let bn_ix = if self.dataset_bn { ds } else { 0 };
        for (i, b) in self.blocks.iter().enumerate() {
            let (bn1, bn2) = &b.bns[bn_ix];
            h = bn1.forward_t(&b.conv1.forward(&h), train).relu();
            h = bn2.forward_t(&b.conv2.forward(&h), train).relu();
            if self.first_block + i < 4 {
                h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        h
    }

    /// Embeddings `[B, 512]` of inputs `[B, 1, 100 (time), 96 (mel)]` (or of trunk outputs
    /// `[B, 256, 12, 12]` for a model from block 4), using dataset `ds`'s BN set.
    pub fn embed(&self, x: &Tensor, ds: usize, train: bool) -> Tensor {
        let h = self.features(x, ds, train);
        // [B, C, T, F]: mean over frequency, then max over time.
        h.mean_dim(3, false, h.kind()).amax(2, false)
    }

    /// Logits of dataset `ds`'s head.
    pub fn logits(&self, embedding: &Tensor, ds: usize) -> Tensor {
        self.heads[ds].forward(embedding)
    }
}

/// Copies the encoder of `w` (every block this model holds, into every BN set) into `vs`;
/// heads are left as they are. Returns how many tensors were copied.
pub fn init_encoder(vs: &nn::VarStore, w: &Cnn9Weights) -> Result<usize, tch::TchError> {
    let _guard = tch::no_grad_guard();
    let vars = vs.variables();
    let mut copied = 0;
    for (name, shape, data) in w.named_tensors() {
        if !name.starts_with("encoder.") {
            continue;
        }
        // `encoder.blockN.bnK.x` also feeds `encoder.blockN.bnsetD.bnK.x`.
        let (block, rest) = name.split_at(name.find(".bn").unwrap_or(name.len()));
        for (vname, var) in &vars {
            let matches = *vname == name
                || (vname.starts_with(&format!("{block}.bnset"))
                    && vname.ends_with(rest)
                    && rest.starts_with(".bn"));
            if !matches {
                continue;
            }
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            if var.size() != dims {
                return Err(tch::TchError::Shape(format!(
                    "{vname}: the model has {:?}, the weights {dims:?}",
                    var.size()
                )));
            }
            var.shallow_clone().copy_(
                &Tensor::from_slice(data)
                    .view(dims.as_slice())
                    .to_kind(Kind::Float),
            );
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_and_parameter_count_match_the_paper() {
        let vs = nn::VarStore::new(Device::Cpu);
        let ds = [DatasetHead {
            name: "a".into(),
            n_classes: 7,
        }];
        let m = Cnn9::new(&vs.root(), &ds, false);
        let x = Tensor::randn([2, 1, 100, 96], (Kind::Float, Device::Cpu));
        let e = m.embed(&x, 0, false);
        assert_eq!(e.size(), [2, 512]);
        assert_eq!(m.logits(&e, 0).size(), [2, 7]);
        let encoder: i64 = vs
            .variables()
            .iter()
            .filter(|(k, _)| k.starts_with("encoder."))
            .map(|(_, v)| v.numel() as i64)
            .sum();
        // ≈ 4.69 M parameters in the encoder (docs/architecture.md §4).
        assert!((4_680_000..4_700_000).contains(&encoder), "{encoder}");
    }

    #[test]
    fn dataset_bn_keeps_one_set_per_dataset() {
        let vs = nn::VarStore::new(Device::Cpu);
        let ds = [
            DatasetHead {
                name: "a".into(),
                n_classes: 3,
            },
            DatasetHead {
                name: "b".into(),
                n_classes: 4,
            },
        ];
        let m = Cnn9::new(&vs.root(), &ds, true);
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(
            names
                .iter()
                .any(|n| n == "encoder.block1.bnset1.bn1.weight"),
            "{names:?}"
        );
        let x = Tensor::randn([4, 1, 100, 96], (Kind::Float, Device::Cpu));
        // Training mode updates only the selected set's running statistics.
        let before = vs.variables()["encoder.block1.bnset0.bn1.running_mean"].copy();
        let _ = m.embed(&x, 1, true);
        let after0 = &vs.variables()["encoder.block1.bnset0.bn1.running_mean"];
        let after1 = &vs.variables()["encoder.block1.bnset1.bn1.running_mean"];
        assert!(before.equal(after0));
        assert!(after1.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
