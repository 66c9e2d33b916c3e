//! The released aiSFX checkpoint (`aisfx==0.1.2`, `aisfx/models/checkpoint.pth`) as
//! [`Cnn9Weights`].
//!
//! The file is a torch zip whose `data.pkl` pickles `(state_dict, ds_dict)`: an `OrderedDict`
//! of tensors and `{dataset: (head_index, n_classes)}` where `head_index` is a *numpy* int64
//! scalar (`numpy.core.multiarray.scalar(dtype, _codecs.encode(bytes, 'latin1'))`).
//! candle-core's pickle machine (`candle_core::pickle::Stack`) evaluates every opcode this file
//! uses and keeps unknown globals (numpy, `_codecs`) as inert `Reduce` objects, so we walk the
//! tuple ourselves and decode the numpy scalar's raw bytes; candle's own `read_pth_tensor_info`
//! only looks for a top-level dict and would find nothing in the tuple. Tensor storages are read
//! from the zip (stored, little-endian).
//!
//! Key mapping: `embedding_net.conv_block{N}.conv{K}.weight` → `encoder.block{N}.conv{K}.weight`,
//! `embedding_net.conv_block{N}.bn{K}.*` → `encoder.block{N}.bn{K}.*` (`num_batches_tracked`
//! dropped), `fc.{i}.{0,2,4}.*` → `head.<dataset>.fc{0,1,2}.*` with `dataset` the `ds_dict` key
//! whose head index is `i`; heads are ordered by that index.

use crate::weights::{Array, Cnn9Weights, WeightsError, BN_EPS};
use candle_core::pickle::{Object, Stack};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Licence of the released weights.
pub const LICENSE: &str = "CC-BY-4.0";
/// The credit that must ship with them.
pub const ATTRIBUTION: &str = "aiSFX encoder weights by Alison B. Ma and Alexander Lerch, \
\"Representation learning for the automatic indexing of sound effects libraries\", ISMIR 2022 \
(aisfx 0.1.2 on PyPI), licensed CC BY 4.0; converted to ONNX (BatchNorm folded, int8 quantised) \
by sfxtag-export";
/// `NOTICE` file written into an exported aiSFX model directory.
pub const NOTICE: &str = "\
This directory holds a conversion of the aiSFX encoder released by Alison B. Ma and
Alexander Lerch with the paper

  A. B. Ma and A. Lerch, \"Representation learning for the automatic indexing of sound
  effects libraries\", Proc. 23rd International Society for Music Information Retrieval
  Conference (ISMIR), 2022.

Source: the aisfx 0.1.2 package on PyPI (aisfx/models/checkpoint.pth).
Licence of the weights: Creative Commons Attribution 4.0 International (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/

Changes made: BatchNorm folded into the convolutions; cross-layer equalisation of consecutive
convolutions (function-preserving); int8 quantisation with per-tensor scales calibrated on
CC0/CC-BY fixture audio; exported to ONNX by sfxtag-export. The network computes the same
function as the original up to the measured quantisation error recorded in manifest.toml.
The classification heads carry no label names (none were released).
";

fn fmt_err(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        path: path.display().to_string(),
        format: "PyTorch checkpoint (.pth zip)",
        message: message.into(),
    }
}

/// `(state_dict, heads in output order as (name, head_index, n_classes))` from the pickle.
type Parsed = (Vec<(String, Object)>, Vec<(String, usize, usize)>);

/// The numpy int64/int32 scalar behind `ds_dict` head indices (or a plain int).
fn object_int(o: &Object) -> Option<i64> {
    match o {
        Object::Int(i) => Some(*i as i64),
        Object::Long(i) => Some(*i),
        // numpy.core.multiarray.scalar(dtype, bytes)
        Object::Reduce { callable, args } => {
            let Object::Class { class_name, .. } = callable.as_ref() else {
                return None;
            };
            if class_name != "scalar" {
                return None;
            }
            let Object::Tuple(a) = args.as_ref() else {
                return None;
            };
            let raw = match a.get(1)? {
                // _codecs.encode(str, 'latin1'): each char is one byte.
                Object::Reduce { args, .. } => match args.as_ref() {
                    Object::Tuple(e) => match e.first()? {
                        Object::Unicode(s) => s.chars().map(|c| c as u32 as u8).collect::<Vec<_>>(),
                        _ => return None,
                    },
                    _ => return None,
                },
                Object::Unicode(s) => s.chars().map(|c| c as u32 as u8).collect(),
                _ => return None,
            };
            match raw.len() {
                8 => Some(i64::from_le_bytes(raw.try_into().ok()?)),
                4 => Some(i32::from_le_bytes(raw.try_into().ok()?) as i64),
                _ => None,
            }
        }
        _ => None,
    }
}

fn parse_pickle(path: &Path, pkl: &[u8]) -> Result<Parsed, WeightsError> {
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut std::io::BufReader::new(pkl))
        .map_err(|e| fmt_err(path, format!("pickle: {e}")))?;
    let obj = stack
        .finalize()
        .map_err(|e| fmt_err(path, format!("pickle: {e}")))?;
    let (state, ds) = match obj {
        Object::Tuple(mut t) if t.len() == 2 => {
            let ds = t.pop().expect("len 2");
            (t.pop().expect("len 2"), Some(ds))
        }
        // A bare state_dict (torch.save(model.state_dict())): heads get positional names.
        o @ Object::Dict(_) => (o, None),
        _ => {
            return Err(WeightsError::Architecture(
                "the pickle is neither (state_dict, ds_dict) nor a state_dict".into(),
            ))
        }
    };
    let Object::Dict(state) = state else {
        return Err(WeightsError::Architecture(
            "the first element is not a state_dict".into(),
        ));
    };
    let state: Vec<(String, Object)> = state
        .into_iter()
        .filter_map(|(k, v)| match k {
            Object::Unicode(k) => Some((k, v)),
            _ => None,
        })
        .collect();
    let mut heads = Vec::new();
    match ds {
        Some(Object::Dict(ds)) => {
            for (k, v) in ds {
                let Object::Unicode(name) = k else {
                    return Err(fmt_err(path, "ds_dict key is not a string"));
                };
                let Object::Tuple(t) = &v else {
                    return Err(fmt_err(path, format!("ds_dict[{name}] is not a tuple")));
                };
                let (Some(idx), Some(n)) = (
                    t.first().and_then(object_int),
                    t.get(1).and_then(object_int),
                ) else {
                    return Err(fmt_err(
                        path,
                        format!("ds_dict[{name}] is not (head_index, n_classes)"),
                    ));
                };
                heads.push((name, idx as usize, n as usize));
            }
        }
        Some(_) => return Err(fmt_err(path, "the second element is not a ds_dict")),
        None => {
            let mut idx: Vec<usize> = state
                .iter()
                .filter_map(|(k, _)| k.strip_prefix("fc.")?.split('.').next()?.parse().ok())
                .collect();
            idx.sort_unstable();
            idx.dedup();
            heads = idx
                .into_iter()
                .map(|i| (format!("head{i}"), i, 0))
                .collect();
        }
    }
    heads.sort_by_key(|h| h.1);
    Ok((state, heads))
}

/// Maps an aiSFX key to the safetensors scheme; `Ok(None)` for tensors we drop.
fn map_key(key: &str, heads: &[(String, usize, usize)]) -> Result<Option<String>, WeightsError> {
    // torch pickles the state_dict's `_metadata` (module versions) as the OrderedDict's state.
    if key == "_metadata" {
        return Ok(None);
    }
    if let Some(rest) = key.strip_prefix("embedding_net.conv_block") {
        if rest.ends_with("num_batches_tracked") {
            return Ok(None);
        }
        return Ok(Some(format!("encoder.block{rest}")));
    }
    if let Some(rest) = key.strip_prefix("fc.") {
        let parts: Vec<&str> = rest.split('.').collect();
        if let [i, l, field] = parts.as_slice() {
            let i: usize = i
                .parse()
                .map_err(|_| WeightsError::Architecture(format!("unexpected tensor {key}")))?;
            let l = match *l {
                "0" => 0,
                "2" => 1,
                "4" => 2,
                _ => {
                    return Err(WeightsError::Architecture(format!(
                        "unexpected tensor {key}"
                    )))
                }
            };
            let Some(h) = heads.iter().find(|h| h.1 == i) else {
                return Err(WeightsError::Architecture(format!(
                    "tensor {key} belongs to head {i}, which ds_dict does not list"
                )));
            };
            return Ok(Some(format!("head.{}.fc{l}.{field}", h.0)));
        }
    }
    Err(WeightsError::Architecture(format!(
        "unexpected tensor {key} (an aiSFX CrossNet has only embedding_net.conv_block*, fc.*)"
    )))
}

/// Reads the released aiSFX checkpoint (or any torch zip of the same `CrossNet`).
pub fn load_checkpoint(path: &Path) -> Result<Cnn9Weights, WeightsError> {
    let file = std::fs::File::open(path).map_err(|source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fmt_err(path, format!("not a torch zip file: {e}")))?;
    let pkl_name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| fmt_err(path, "no data.pkl in the zip"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
        .map_err(|e| fmt_err(path, format!("reading {pkl_name}: {e}")))?;
    let (state, heads) = parse_pickle(path, &pkl)?;
    if !state
        .iter()
        .any(|(k, _)| k == "embedding_net.conv_block1.conv1.weight")
    {
        let sample: Vec<&str> = state.iter().take(4).map(|(k, _)| k.as_str()).collect();
        return Err(WeightsError::Architecture(format!(
            "no embedding_net.conv_block1.conv1.weight (found e.g. {sample:?})"
        )));
    }
    let mut tensors = BTreeMap::new();
    for (key, obj) in state {
        let Some(name) = map_key(&key, &heads)? else {
            continue;
        };
        let info = obj
            .into_tensor_info(Object::Unicode(key.clone()), Path::new(""))
            .map_err(|e| fmt_err(path, format!("{key}: {e}")))?
            .ok_or_else(|| fmt_err(path, format!("{key} is not a tensor")))?;
        if info.dtype != candle_core::DType::F32 {
            return Err(WeightsError::Dtype {
                name: key,
                found: format!("{:?}", info.dtype),
            });
        }
        let shape = info.layout.shape().dims().to_vec();
        let numel: usize = shape.iter().product();
        // Contiguous C order only (what state_dict tensors are).
        let mut want = 1;
        for (d, s) in shape.iter().zip(info.layout.stride()).rev() {
            if *d > 1 && *s != want {
                return Err(fmt_err(path, format!("{key} is not contiguous")));
            }
            want *= d;
        }
        let member = format!(
            "{prefix}data/{}",
            info.path.rsplit('/').next().unwrap_or("")
        );
        let mut raw = Vec::new();
        zip.by_name(&member)
            .and_then(|mut f| f.read_to_end(&mut raw).map_err(Into::into))
            .map_err(|e| fmt_err(path, format!("{key}: storage {member}: {e}")))?;
        let start = info.layout.start_offset();
        let bytes = raw
            .get(start..start + numel * 4)
            .ok_or_else(|| fmt_err(path, format!("{key}: storage {member} too short")))?;
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, Array::new(shape, data));
    }
    for (name, _, n) in &heads {
        let k = format!("head.{name}.fc2.weight");
        if let Some(a) = tensors.get(&k) {
            if *n != 0 && a.shape[0] != *n {
                return Err(WeightsError::Shape {
                    name: k,
                    expected: vec![*n, a.shape[1]],
                    found: a.shape.clone(),
                });
            }
        }
    }
    let order = heads.into_iter().map(|h| h.0).collect();
    Cnn9Weights::from_named(tensors, Some(order), BN_EPS)
}
