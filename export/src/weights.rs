//! CNN9-max weights (architecture.md §4) as plain arrays, their validation, deterministic random
//! initialisation and the safetensors format that is the contract with the trainer.
//!
//! # safetensors name scheme (the trainer writes this, `export` reads it)
//!
//! All tensors are little-endian `F32`, PyTorch layouts:
//!
//! | name | shape |
//! | --- | --- |
//! | `encoder.block{N}.conv{K}.weight` (N = 1..4, K = 1, 2) | `[out, in, 3, 3]` |
//! | `encoder.block{N}.bn{K}.{weight,bias,running_mean,running_var}` | `[out]` |
//! | `head.<name>.fc{L}.weight` (L = 0, 1, 2) | `[out, in]` (PyTorch `nn.Linear`) |
//! | `head.<name>.fc{L}.bias` | `[out]` |
//!
//! Channels are 64/128/256/512 for blocks 1–4 (the input has 1 channel); heads are
//! `512 → H₁ → H₂ → C`, `H₁ = 256, H₂ = 128` for the released ones (a head that merges several,
//! as `sfxtag-train heads --ensemble` writes, is wider; the widths are read from `fc0`/`fc1`).
//! A head whose `fc0` takes 1024 inputs reads the embedding followed by block 3's pooled
//! features ([`HeadInput::EmbeddingBlock3`]); the graph computes them for it. BatchNorm
//! epsilon is 1e-5 (PyTorch's default); a `bn_eps` metadata entry overrides it. The optional metadata entry `heads` lists the head names, comma-separated,
//! in logit-output order; without it heads are taken in name order. Head names must match
//! `[A-Za-z0-9_-]+` (they become ONNX output names `logits_<name>` and manifest keys).
//! Any other tensor is an error, so that a checkpoint of another architecture is refused rather
//! than half-read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Output channels of the four conv blocks.
pub const CHANNELS: [usize; 4] = [64, 128, 256, 512];
/// Embedding dimension (channels of the last block).
pub const EMBEDDING_DIM: usize = 512;
/// Width of block 3's pooled features: its output averaged over frequency, then the maximum and
/// the mean over time of each of its 256 channels (maxima first).
pub const BLOCK3_FEATURES_DIM: usize = 2 * CHANNELS[2];
/// Hidden sizes of every head: `512 → 256 → 128 → C`.
pub const HEAD_HIDDEN: [usize; 2] = [256, 128];
/// PyTorch's BatchNorm default.
pub const BN_EPS: f32 = 1e-5;

/// A dense f32 array in row-major (PyTorch) layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f32,
}

/// One `conv3x3 (no bias) → BatchNorm` pair (the ReLU after it has no parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvBn {
    /// `[out, in, 3, 3]`.
    pub weight: Array,
    pub bn: BatchNorm,
}

/// A PyTorch `nn.Linear`: `y = x · weightᵀ + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Array,
    pub bias: Vec<f32>,
}

/// What a head reads; its `fc0`'s input width tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInput {
    /// The embedding (512), as the released heads.
    Embedding,
    /// The embedding, then block 3's pooled features (512 + 512): block 3 keeps detail that
    /// block 4's time maximum loses, and heads on both name unheard sources better.
    EmbeddingBlock3,
}

impl HeadInput {
    pub fn width(self) -> usize {
        match self {
            HeadInput::Embedding => EMBEDDING_DIM,
            HeadInput::EmbeddingBlock3 => EMBEDDING_DIM + BLOCK3_FEATURES_DIM,
        }
    }
    /// The input of an `fc0` this wide, if any.
    pub fn of_width(w: usize) -> Option<Self> {
        [HeadInput::Embedding, HeadInput::EmbeddingBlock3]
            .into_iter()
            .find(|i| i.width() == w)
    }
}

/// One classification head: `fc0 → ReLU → fc1 → ReLU → fc2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub name: String,
    pub layers: [Linear; 3],
}

impl Head {
    pub fn n_classes(&self) -> usize {
        self.layers[2].bias.len()
    }
    /// Widths of the two hidden layers (the outputs of `fc0` and `fc1`).
    pub fn hidden(&self) -> [usize; 2] {
        [self.layers[0].bias.len(), self.layers[1].bias.len()]
    }
    /// What the head reads (the embedding when `fc0`'s width is not a known one: validation
    /// then reports the shape).
    pub fn input(&self) -> HeadInput {
        self.layers[0]
            .weight
            .shape
            .get(1)
            .and_then(|&w| HeadInput::of_width(w))
            .unwrap_or(HeadInput::Embedding)
    }
    /// The head's shape, as [`expected_tensors_with`] takes it.
    pub fn dims(&self) -> HeadDims<'_> {
        HeadDims {
            name: &self.name,
            input: self.input(),
            hidden: self.hidden(),
            classes: self.n_classes(),
        }
    }
}

/// The whole model: 8 conv+BN layers (block-major: block1.conv1, block1.conv2, block2.conv1, …)
/// and any number of heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Cnn9Weights {
    pub convs: Vec<ConvBn>,
    pub heads: Vec<Head>,
}

/// Why weights were refused.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {format} file: {message}")]
    Format {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("tensor {name} is missing (expected shape {expected:?})")]
    Missing { name: String, expected: Vec<usize> },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor {name} has dtype {found}, expected F32 or F16")]
    Dtype { name: String, found: String },
    #[error("tensor {name} holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
    },
    #[error("tensor {name}: running_var must not be negative (index {index} is {value})")]
    NegativeVariance {
        name: String,
        index: usize,
        value: f32,
    },
    #[error("not a CNN9-max checkpoint (another architecture?): {0}")]
    Architecture(String),
    #[error("invalid head name '{0}': must be [A-Za-z0-9_-]+ (it becomes an ONNX output and manifest key)")]
    HeadName(String),
}

/// `(in, out)` channels of conv layer `i` (0..8).
pub fn conv_channels(i: usize) -> (usize, usize) {
    let out = CHANNELS[i / 2];
    let inp = if i == 0 {
        1
    } else if i % 2 == 1 {
        out
    } else {
        CHANNELS[i / 2 - 1]
    };
    (inp, out)
}

/// safetensors name prefix of conv layer `i`'s pair: (`encoder.block{N}`, K).
fn conv_prefix(i: usize) -> (String, usize) {
    (format!("encoder.block{}", i / 2 + 1), i % 2 + 1)
}

/// A head's shape: its input, hidden widths and classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadDims<'a> {
    pub name: &'a str,
    pub input: HeadInput,
    pub hidden: [usize; 2],
    pub classes: usize,
}

impl<'a> HeadDims<'a> {
    /// A released head: the embedding in, widths 256 and 128.
    pub fn released(name: &'a str, classes: usize) -> Self {
        Self {
            name,
            input: HeadInput::Embedding,
            hidden: HEAD_HIDDEN,
            classes,
        }
    }
    /// `(in, out)` of layer `l`.
    pub fn layer(&self, l: usize) -> (usize, usize) {
        match l {
            0 => (self.input.width(), self.hidden[0]),
            1 => (self.hidden[0], self.hidden[1]),
            _ => (self.hidden[1], self.classes),
        }
    }
}

/// `(in, out)` of head layer `l` for a head with `n_classes` outputs and the released widths.
pub fn head_layer_dims(l: usize, n_classes: usize) -> (usize, usize) {
    HeadDims::released("", n_classes).layer(l)
}

pub(crate) fn valid_head_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Every tensor name of the scheme with its expected shape, for the given heads (released widths).
pub fn expected_tensors(heads: &[(&str, usize)]) -> Vec<(String, Vec<usize>)> {
    let heads: Vec<HeadDims> = heads
        .iter()
        .map(|(n, c)| HeadDims::released(n, *c))
        .collect();
    expected_tensors_with(&heads)
}

/// [`expected_tensors`] for heads of any shape.
pub fn expected_tensors_with(heads: &[HeadDims]) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    for i in 0..8 {
        let (inp, out) = conv_channels(i);
        let (p, k) = conv_prefix(i);
        v.push((format!("{p}.conv{k}.weight"), vec![out, inp, 3, 3]));
        for f in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{p}.bn{k}.{f}"), vec![out]));
        }
    }
    for h in heads {
        let name = h.name;
        for l in 0..3 {
            let (i, o) = h.layer(l);
            v.push((format!("head.{name}.fc{l}.weight"), vec![o, i]));
            v.push((format!("head.{name}.fc{l}.bias"), vec![o]));
        }
    }
    v
}

/// SplitMix64: tiny, deterministic, good enough for initialisation.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

impl Cnn9Weights {
    /// Deterministic random weights with the given heads `(name, n_classes)`.
    ///
    /// Convs and linears use PyTorch's `kaiming_uniform_` (leaky_relu, a = 0: bound
    /// `√2·√(3/fan_in)`), as aiSFX's `init_layer`. Unlike a fresh PyTorch model, BatchNorm
    /// statistics and biases are randomised mildly (γ ∈ [0.5, 1.5], β, mean ∈ [−0.1, 0.1],
    /// var ∈ [0.5, 1.5]) so that BN folding and equalisation are actually exercised by tests.
    /// Cheap: ~4.7 M draws of SplitMix64.
    pub fn random(seed: u64, heads: &[(&str, usize)]) -> Self {
        let mut rng = SplitMix::new(seed);
        let mut kaiming = |shape: Vec<usize>, fan_in: usize| {
            let bound = 2f32.sqrt() * (3.0 / fan_in as f32).sqrt();
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.uniform(-bound, bound)).collect();
            Array::new(shape, data)
        };
        let mut convs = Vec::with_capacity(8);
        let mut shapes = Vec::new();
        for i in 0..8 {
            let (inp, out) = conv_channels(i);
            shapes.push(out);
            convs.push(kaiming(vec![out, inp, 3, 3], inp * 9));
        }
        let mut heads_w = Vec::new();
        for (name, c) in heads {
            let mut layers = Vec::new();
            for l in 0..3 {
                let (i, o) = head_layer_dims(l, *c);
                layers.push(kaiming(vec![o, i], i));
            }
            heads_w.push((name.to_string(), layers));
        }
        let mut rng = SplitMix::new(seed.wrapping_add(1));
        let mut vec = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n).map(|_| rng.uniform(lo, hi)).collect()
        };
        let convs = convs
            .into_iter()
            .zip(shapes)
            .map(|(weight, out)| ConvBn {
                weight,
                bn: BatchNorm {
                    weight: vec(out, 0.5, 1.5),
                    bias: vec(out, -0.1, 0.1),
                    running_mean: vec(out, -0.1, 0.1),
                    running_var: vec(out, 0.5, 1.5),
                    eps: BN_EPS,
                },
            })
            .collect();
        let heads = heads_w
            .into_iter()
            .map(|(name, layers)| {
                let layers = layers.map_array(|w| {
                    let o = w.shape[0];
                    Linear {
                        weight: w,
                        bias: vec(o, -0.05, 0.05),
                    }
                });
                Head { name, layers }
            })
            .collect();
        Self { convs, heads }
    }

    /// `(name, n_classes)` of every head, in output order.
    pub fn head_dims(&self) -> Vec<(&str, usize)> {
        self.heads
            .iter()
            .map(|h| (h.name.as_str(), h.n_classes()))
            .collect()
    }

    /// Every tensor by its safetensors name (see the module doc).
    pub fn named_tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        let mut v: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for (i, c) in self.convs.iter().enumerate() {
            let (p, k) = conv_prefix(i);
            v.push((
                format!("{p}.conv{k}.weight"),
                c.weight.shape.clone(),
                &c.weight.data,
            ));
            let n = c.bn.weight.len();
            for (f, d) in [
                ("weight", &c.bn.weight),
                ("bias", &c.bn.bias),
                ("running_mean", &c.bn.running_mean),
                ("running_var", &c.bn.running_var),
            ] {
                v.push((format!("{p}.bn{k}.{f}"), vec![n], d));
            }
        }
        for h in &self.heads {
            for (l, lin) in h.layers.iter().enumerate() {
                v.push((
                    format!("head.{}.fc{l}.weight", h.name),
                    lin.weight.shape.clone(),
                    &lin.weight.data,
                ));
                v.push((
                    format!("head.{}.fc{l}.bias", h.name),
                    vec![lin.bias.len()],
                    &lin.bias,
                ));
            }
        }
        v
    }

    /// Checks architecture, shapes, finiteness and BN variances.
    pub fn validate(&self) -> Result<(), WeightsError> {
        if self.convs.len() != 8 {
            return Err(WeightsError::Architecture(format!(
                "{} conv layers, CNN9 has 8",
                self.convs.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for h in &self.heads {
            if !valid_head_name(&h.name) {
                return Err(WeightsError::HeadName(h.name.clone()));
            }
            if !seen.insert(h.name.as_str()) {
                return Err(WeightsError::HeadName(format!("{} (duplicate)", h.name)));
            }
        }
        let dims: Vec<HeadDims> = self.heads.iter().map(Head::dims).collect();
        if let Some(h) = dims.iter().find(|h| h.hidden.contains(&0)) {
            return Err(WeightsError::Architecture(format!(
                "head {} has an empty hidden layer",
                h.name
            )));
        }
        let expected: HashMap<String, Vec<usize>> =
            expected_tensors_with(&dims).into_iter().collect();
        for (name, shape, data) in self.named_tensors() {
            let want = &expected[&name];
            if &shape != want || data.len() != want.iter().product::<usize>() {
                return Err(WeightsError::Shape {
                    name,
                    expected: want.clone(),
                    found: shape,
                });
            }
            if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(WeightsError::NonFinite { name, index, value });
            }
            if name.ends_with("running_var") {
                if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| **v < 0.0) {
                    return Err(WeightsError::NegativeVariance { name, index, value });
                }
            }
        }
        for (i, c) in self.convs.iter().enumerate() {
            if !(c.bn.eps.is_finite() && c.bn.eps >= 0.0) {
                return Err(WeightsError::NonFinite {
                    name: format!("{}.bn{}.eps", conv_prefix(i).0, conv_prefix(i).1),
                    index: 0,
                    value: c.bn.eps,
                });
            }
        }
        Ok(())
    }

    /// Builds weights from tensors named as in the module doc (`head_order`: the heads in
    /// output order; `None` = every `head.<name>.…` found, in name order). Validates.
    pub fn from_named(
        mut tensors: BTreeMap<String, Array>,
        head_order: Option<Vec<String>>,
        eps: f32,
    ) -> Result<Self, WeightsError> {
        if !tensors.contains_key("encoder.block1.conv1.weight") {
            let sample: Vec<_> = tensors.keys().take(4).cloned().collect();
            return Err(WeightsError::Architecture(format!(
                "no tensor encoder.block1.conv1.weight (found e.g. {sample:?})"
            )));
        }
        let heads: Vec<String> = match head_order {
            Some(h) => h,
            None => tensors
                .keys()
                .filter_map(|k| {
                    k.strip_prefix("head.")
                        .and_then(|r| r.strip_suffix(".fc0.weight"))
                })
                .map(str::to_string)
                .collect(),
        };
        let mut dims = Vec::new();
        for h in &heads {
            if !valid_head_name(h) {
                return Err(WeightsError::HeadName(h.clone()));
            }
            // Widths as the file has them (checked for consistency below).
            let shape = |l: usize| {
                tensors
                    .get(&format!("head.{h}.fc{l}.weight"))
                    .filter(|a| a.shape.len() == 2)
                    .map(|a| (a.shape[0], a.shape[1]))
            };
            let width = |l: usize, default: usize| shape(l).map_or(default, |s| s.0);
            let name = format!("head.{h}.fc2.weight");
            // The classes are fc2's rows, whatever they are: 0 stands for "any" in a message.
            let expected = vec![0, width(1, HEAD_HIDDEN[1])];
            let c = match tensors.get(&name) {
                Some(a) if a.shape.len() == 2 => a.shape[0],
                Some(a) => {
                    return Err(WeightsError::Shape {
                        name,
                        expected,
                        found: a.shape.clone(),
                    })
                }
                None => return Err(WeightsError::Missing { name, expected }),
            };
            dims.push(HeadDims {
                name: h.as_str(),
                input: shape(0)
                    .and_then(|s| HeadInput::of_width(s.1))
                    .unwrap_or(HeadInput::Embedding),
                hidden: [width(0, HEAD_HIDDEN[0]), width(1, HEAD_HIDDEN[1])],
                classes: c,
            });
        }
        let expected = expected_tensors_with(&dims);
        for (name, shape) in &expected {
            match tensors.get(name) {
                None => {
                    return Err(WeightsError::Missing {
                        name: name.clone(),
                        expected: shape.clone(),
                    })
                }
                Some(a) if &a.shape != shape => {
                    return Err(WeightsError::Shape {
                        name: name.clone(),
                        expected: shape.clone(),
                        found: a.shape.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            return Err(WeightsError::Architecture(format!(
                "unexpected tensor {extra}"
            )));
        }
        let mut take = |n: String| tensors.remove(&n).expect("checked above");
        let mut convs = Vec::new();
        for i in 0..8 {
            let (p, k) = conv_prefix(i);
            convs.push(ConvBn {
                weight: take(format!("{p}.conv{k}.weight")),
                bn: BatchNorm {
                    weight: take(format!("{p}.bn{k}.weight")).data,
                    bias: take(format!("{p}.bn{k}.bias")).data,
                    running_mean: take(format!("{p}.bn{k}.running_mean")).data,
                    running_var: take(format!("{p}.bn{k}.running_var")).data,
                    eps,
                },
            });
        }
        let heads = heads
            .iter()
            .map(|h| Head {
                name: h.clone(),
                layers: [0, 1, 2].map(|l| Linear {
                    weight: take(format!("head.{h}.fc{l}.weight")),
                    bias: take(format!("head.{h}.fc{l}.bias")).data,
                }),
            })
            .collect();
        let w = Self { convs, heads };
        w.validate()?;
        Ok(w)
    }

    /// Reads the safetensors format of the module doc.
    pub fn from_safetensors_bytes(bytes: &[u8], origin: &str) -> Result<Self, WeightsError> {
        let fmt_err = |message: String| WeightsError::Format {
            path: origin.to_string(),
            format: "safetensors",
            message,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| fmt_err(e.to_string()))?;
        let st =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| fmt_err(e.to_string()))?;
        let info = meta.metadata().clone().unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            // F16 is read too: a checkpoint brought back from a GPU run is stored at half size.
            let data = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(WeightsError::Dtype {
                        name,
                        found: format!("{other:?}"),
                    })
                }
            };
            tensors.insert(name, Array::new(view.shape().to_vec(), data));
        }
        let heads = info.get("heads").map(|s| {
            s.split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect()
        });
        let eps = match info.get("bn_eps") {
            Some(e) => e
                .parse::<f32>()
                .map_err(|_| fmt_err(format!("metadata bn_eps '{e}' is not a number")))?,
            None => BN_EPS,
        };
        Self::from_named(tensors, heads, eps)
    }

    pub fn from_safetensors(path: &Path) -> Result<Self, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    /// Serialises to the safetensors format of the module doc (with `heads` and `bn_eps`
    /// metadata).
    pub fn to_safetensors_bytes(&self) -> Vec<u8> {
        let named = self.named_tensors();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = named
            .into_iter()
            .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views = bytes.iter().map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("shape matches data"),
            )
        });
        let mut meta = HashMap::new();
        meta.insert(
            "heads".to_string(),
            self.heads
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        meta.insert("format".to_string(), "sfxtag-cnn9".to_string());
        let eps = self.convs.first().map(|c| c.bn.eps).unwrap_or(BN_EPS);
        meta.insert("bn_eps".to_string(), eps.to_string());
        safetensors::serialize(views, Some(meta)).expect("in-memory serialisation")
    }

    pub fn write_safetensors(&self, path: &Path) -> Result<(), WeightsError> {
        std::fs::write(path, self.to_safetensors_bytes()).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// `[T; 3].map` over owned values from a `Vec` (exactly three elements).
trait MapArray<T> {
    fn map_array<U>(self, f: impl FnMut(T) -> U) -> [U; 3];
}

impl<T> MapArray<T> for Vec<T> {
    fn map_array<U>(self, f: impl FnMut(T) -> U) -> [U; 3] {
        let v: Vec<U> = self.into_iter().map(f).collect();
        match <[U; 3]>::try_from(v) {
            Ok(a) => a,
            Err(_) => panic!("exactly three head layers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_deterministic_and_valid() {
        let a = Cnn9Weights::random(7, &[("ucs", 5)]);
        let b = Cnn9Weights::random(7, &[("ucs", 5)]);
        assert_eq!(a, b);
        a.validate().unwrap();
        let params: usize = a
            .named_tensors()
            .iter()
            .filter(|t| t.0.starts_with("encoder."))
            .map(|t| t.2.len())
            .sum();
        // docs/architecture.md §4: ≈ 4.69 M encoder parameters (convs + BN).
        assert!((4_680_000..4_700_000).contains(&params), "{params}");
        assert_ne!(a, Cnn9Weights::random(8, &[("ucs", 5)]));
    }

    #[test]
    fn safetensors_round_trip_keeps_head_order() {
        let a = Cnn9Weights::random(1, &[("zeta", 3), ("alpha", 4)]);
        let back = Cnn9Weights::from_safetensors_bytes(&a.to_safetensors_bytes(), "mem").unwrap();
        assert_eq!(a, back);
        assert_eq!(back.heads[0].name, "zeta");
    }

    fn named(w: &Cnn9Weights) -> BTreeMap<String, Array> {
        w.named_tensors()
            .into_iter()
            .map(|(n, s, d)| (n, Array::new(s, d.to_vec())))
            .collect()
    }

    #[test]
    fn missing_tensor_is_named() {
        let mut t = named(&Cnn9Weights::random(1, &[("a", 3)]));
        t.remove("encoder.block3.bn2.running_var");
        let e = Cnn9Weights::from_named(t, None, BN_EPS).unwrap_err();
        assert!(
            e.to_string().contains("encoder.block3.bn2.running_var"),
            "{e}"
        );
    }

    #[test]
    fn wrong_shape_names_tensor_and_shapes() {
        let mut t = named(&Cnn9Weights::random(1, &[]));
        t.insert(
            "encoder.block2.conv1.weight".into(),
            Array::new(vec![128, 32, 3, 3], vec![0.0; 128 * 32 * 9]),
        );
        let e = Cnn9Weights::from_named(t, None, BN_EPS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("encoder.block2.conv1.weight"), "{e}");
        assert!(
            e.contains("[128, 64, 3, 3]") && e.contains("[128, 32, 3, 3]"),
            "{e}"
        );
    }

    /// Replaces head 0's layers with `512 → h1 → h2 → classes` (zeros), or with `fc1` reading
    /// `fc1_in` inputs when that differs from `h1`.
    fn widen(w: &mut Cnn9Weights, h1: usize, h2: usize, fc1_in: usize) {
        let c = w.heads[0].n_classes();
        let lin = |o: usize, i: usize| Linear {
            weight: Array::new(vec![o, i], vec![0.0; o * i]),
            bias: vec![0.0; o],
        };
        w.heads[0].layers = [lin(h1, EMBEDDING_DIM), lin(h2, fc1_in), lin(c, h2)];
    }

    #[test]
    fn a_wider_head_is_valid_and_round_trips_an_inconsistent_one_is_refused() {
        let mut w = Cnn9Weights::random(3, &[("merged", 4), ("plain", 2)]);
        widen(&mut w, 3 * 256, 3 * 128, 3 * 256);
        w.validate().unwrap();
        assert_eq!(w.heads[0].hidden(), [768, 384]);
        assert_eq!(w.heads[1].hidden(), HEAD_HIDDEN);
        let back = Cnn9Weights::from_safetensors_bytes(&w.to_safetensors_bytes(), "mem").unwrap();
        assert_eq!(w, back);

        let mut bad = Cnn9Weights::random(3, &[("merged", 4)]);
        widen(&mut bad, 768, 384, 256);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("head.merged.fc1.weight"), "{e}");
        let e = Cnn9Weights::from_named(named(&bad), None, BN_EPS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("head.merged.fc1.weight"), "{e}");
        // A missing last layer is reported with the width the file's fc1 gives it.
        let mut t = named(&w);
        t.remove("head.merged.fc2.weight");
        let e = Cnn9Weights::from_named(t, None, BN_EPS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("head.merged.fc2.weight") && e.contains("[0, 384]"),
            "{e}"
        );
    }

    #[test]
    fn nan_weight_is_refused() {
        let mut w = Cnn9Weights::random(1, &[("a", 3)]);
        w.heads[0].layers[1].weight.data[17] = f32::NAN;
        let e = w.validate().unwrap_err().to_string();
        assert!(
            e.contains("head.a.fc1.weight") && e.contains("index 17"),
            "{e}"
        );
        let mut w = Cnn9Weights::random(1, &[]);
        w.convs[0].bn.running_var[0] = f32::INFINITY;
        assert!(w.validate().is_err());
    }

    #[test]
    fn other_architecture_is_refused() {
        let mut t = named(&Cnn9Weights::random(1, &[]));
        t.insert(
            "encoder.block5.conv1.weight".into(),
            Array::new(vec![1], vec![0.0]),
        );
        let e = Cnn9Weights::from_named(t, None, BN_EPS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another architecture") && e.contains("block5"),
            "{e}"
        );
        let mut t = BTreeMap::new();
        t.insert(
            "features.0.weight".to_string(),
            Array::new(vec![1], vec![0.0]),
        );
        let e = Cnn9Weights::from_named(t, None, BN_EPS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another architecture"), "{e}");
    }
}
