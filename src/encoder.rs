//! The tract encoder: one model window in, the raw embedding and each head's logits out.
//!
//! The input tensor is allocated once and reused: it lives in an `Arc` that tract borrows for
//! the run and hands back, so filling it for the next window is a copy, not an allocation. Output
//! values are copied into preallocated buffers. (tract itself allocates its outputs per run.)

mod packed_patches;

use sfxtag_core::frontend::{ModelWindow, N_MELS, WINDOW_FRAMES};
use sfxtag_core::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::plan::SimpleState;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot load the encoder {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: TractError,
    },
    #[error("cannot load the encoder {path}: the manifest's head '{head}' reads output '{output}', which this encoder does not have")]
    MissingOutput {
        path: PathBuf,
        head: String,
        output: String,
    },
    #[error("encoder output '{name}' has {found} values, the manifest says {expected}")]
    OutputShape {
        name: String,
        found: usize,
        expected: usize,
    },
    #[error("inference failed")]
    Run(#[source] TractError),
}

pub struct Encoder {
    state: TypedSimpleState,
    input: Arc<Tensor>,
    /// Raw (not z-scored) embedding of the last run.
    pub embedding: Vec<f32>,
    /// Logits of each head asked for at load (`heads`), in that order.
    pub logits: Vec<Vec<f32>>,
    output_names: Vec<String>,
    /// Windows run so far (what the silence gate saves is counted against it).
    pub runs: u64,
}

impl Encoder {
    /// Loads encoder `file` (the manifest's int8 `encoder.file` or its fp32 twin) from `dir`
    /// with its embedding and the outputs of the manifest heads `heads` (indices). Heads left out
    /// are pruned from the plan: an unlabelled head costs memory and time and tells nobody
    /// anything (the released aiSFX model has nine).
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        file: &str,
        heads: &[usize],
    ) -> Result<Self, EncoderError> {
        let path = dir.join(file);
        let load_err = |source: TractError| EncoderError::Load {
            path: path.clone(),
            source,
        };
        let mut names = vec![manifest.encoder.embedding_output.clone()];
        let heads: Vec<_> = heads
            .iter()
            .filter_map(|&i| manifest.heads.get(i))
            .collect();
        names.extend(heads.iter().map(|h| h.output.clone()));
        let shape = manifest.encoder.input_shape;
        let mut model = tract_onnx::onnx().model_for_path(&path).map_err(load_err)?;
        // Every head the manifest names must exist, used or not: a mismatch means the wrong file.
        if let Some(h) = manifest
            .heads
            .iter()
            .find(|h| model.find_outlet_label(&h.output).is_none())
        {
            return Err(EncoderError::MissingOutput {
                path: path.clone(),
                head: h.name.clone(),
                output: h.output.clone(),
            });
        }
        model
            .set_input_fact(0, f32::fact(shape).into())
            .map_err(load_err)?;
        model.select_outputs_by_name(&names).map_err(load_err)?;
        let mut optimized = model.into_optimized().map_err(load_err)?;
        fold_constant_chains(&mut optimized).map_err(load_err)?;
        packed_patches::replace_im2col(&mut optimized).map_err(load_err)?;
        let plan = optimized.into_runnable().map_err(load_err)?;
        let state = SimpleState::new(&plan).map_err(load_err)?;
        let input = Arc::new(Tensor::zero::<f32>(&shape).map_err(load_err)?);
        let mut logits = Vec::new();
        for h in heads {
            logits.push(vec![0.0; h.n_classes]);
        }
        Ok(Self {
            state,
            input,
            embedding: vec![0.0; manifest.encoder.embedding_dim],
            logits,
            output_names: names,
            runs: 0,
        })
    }

    /// Runs one normalised model window.
    pub fn run(&mut self, window: &ModelWindow) -> Result<(), EncoderError> {
        self.runs += 1;
        let input = match Arc::get_mut(&mut self.input) {
            Some(t) => t,
            None => {
                // tract kept a reference (never observed): fall back to a fresh tensor.
                self.input = Arc::new(
                    Tensor::zero::<f32>(&[1, 1, WINDOW_FRAMES, N_MELS])
                        .map_err(EncoderError::Run)?,
                );
                Arc::get_mut(&mut self.input).expect("fresh tensor")
            }
        };
        let mut view = input.try_as_plain_ram_mut().map_err(EncoderError::Run)?;
        let dst = view.as_slice_mut::<f32>().map_err(EncoderError::Run)?;
        for (d, row) in dst.chunks_exact_mut(N_MELS).zip(window.iter()) {
            d.copy_from_slice(row);
        }
        let outputs = self
            .state
            .run(tvec![self.input.clone().into_tvalue()])
            .map_err(EncoderError::Run)?;
        for (i, out) in outputs.iter().enumerate() {
            let v = out
                .try_as_plain_ram()
                .and_then(|p| p.as_slice::<f32>())
                .map_err(EncoderError::Run)?;
            let dst = if i == 0 {
                &mut self.embedding
            } else {
                &mut self.logits[i - 1]
            };
            if v.len() != dst.len() {
                return Err(EncoderError::OutputShape {
                    name: self.output_names[i].clone(),
                    found: v.len(),
                    expected: dst.len(),
                });
            }
            dst.copy_from_slice(v);
        }
        Ok(())
    }
}

/// Folds what tract's optimiser leaves computed on constants at every run. For each quantised
/// conv it sums the kernel (cast to i32, then reduced) to correct for the activations' zero
/// point, but it refuses to fold a step whose output exceeds 4 MiB, so for the two 512-channel
/// convs of CNN9 the i32 cast of the kernel (4.7 and 9.4 MB) and its sum ran per window: 2.9 ms
/// of work and a 14 MB transient. A chain is folded only when its end result is no larger than
/// its inputs, so the model never grows. Returns the number of chains folded.
pub fn fold_constant_chains(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    'restart: loop {
        for id in model.eval_order()? {
            let node = &model.nodes()[id];
            if node.op_is::<Const>() || node.inputs.is_empty() {
                continue;
            }
            let facts = model.node_input_facts(id)?;
            let Some(consts) = facts
                .iter()
                .map(|f| f.konst.clone())
                .collect::<Option<TVec<_>>>()
            else {
                continue;
            };
            drop(facts);
            let input_bytes: usize = consts.iter().map(|t| bytes(t)).sum();
            let inputs = consts.into_iter().map(|t| t.into_tvalue()).collect();
            let Some(mut out) = node.op.eval_out_of_plan(inputs)? else {
                continue;
            };
            // Follow single-input successors: the cast's big output is only a step to a sum.
            let mut last = id;
            while let Some(succ) = model.single_succ(last)? {
                if succ.inputs.len() != 1 {
                    break;
                }
                match succ.op.eval_out_of_plan(out.clone()) {
                    Ok(Some(next)) => {
                        out = next;
                        last = succ.id;
                    }
                    _ => break,
                }
            }
            let out_bytes: usize = out.iter().map(|t| bytes(t)).sum();
            if out.len() != 1 || out_bytes > input_bytes {
                continue;
            }
            let name = format!("{}.folded", model.nodes()[last].name);
            let mut patch = TypedModelPatch::default();
            let wire = patch.add_const(name, out.remove(0).into_arc_tensor())?;
            patch.shunt_outside(model, OutletId::new(last, 0), wire)?;
            patch.apply(model)?;
            model.compact()?;
            folded += 1;
            continue 'restart;
        }
        return Ok(folded);
    }
}

fn bytes(t: &Tensor) -> usize {
    t.datum_type().size_of() * t.volume()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::{cast, Cast};
    use tract_onnx::tract_core::ops::change_axes::AxisOp;
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

    /// x + sum(i32(k)) with a 5 MiB i8 constant `k`: its i32 cast (20 MiB) is over tract's
    /// folding budget, as the kernels of CNN9's 512-channel convs are.
    fn model_with_big_constant_chain(n: usize) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", i32::fact([1])).unwrap();
        let k = Tensor::from_shape(&[1, n], &vec![1i8; n]).unwrap();
        let k = m.add_const("k", k).unwrap();
        let c = m
            .wire_node("k_as_i32", cast(i32::datum_type()), &[k])
            .unwrap();
        let reduce = Reduce {
            axes: tvec!(1),
            reducer: Reducer::Sum,
        };
        let s = m.wire_node("k_sum", reduce, &c).unwrap();
        let s = m.wire_node("k_sum_rm", AxisOp::Rm(1), &s).unwrap();
        let y = m
            .wire_node("y", tract_onnx::tract_core::ops::math::add(), &[x, s[0]])
            .unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }

    #[test]
    fn folds_constant_work_tract_leaves_to_every_run() {
        let n = 5 << 20;
        let mut m = model_with_big_constant_chain(n).into_optimized().unwrap();
        let casts = |m: &TypedModel| m.nodes().iter().filter(|n| n.op_is::<Cast>()).count();
        assert_eq!(
            casts(&m),
            1,
            "premise: tract keeps the big cast in the plan"
        );
        assert_eq!(fold_constant_chains(&mut m).unwrap(), 1);
        assert_eq!(casts(&m), 0);
        assert!(
            m.nodes().iter().all(|node| node.name != "k"),
            "the unused kernel is dropped"
        );
        let plan = m.into_runnable().unwrap();
        let y = plan.run(tvec![tensor1(&[3i32]).into_tvalue()]).unwrap();
        let y = y[0].try_as_plain_ram().unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[3 + n as i32]);
    }

    /// The shipped int8 encoder gives bit for bit the same outputs with its im2col replaced by
    /// [`packed_patches::PackedPatches`], on the first run and on later runs (which reuse the
    /// padded-image buffer).
    #[test]
    fn packed_patches_leave_the_shipped_encoders_outputs_unchanged() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9/encoder.onnx");
        let im2cols = |m: &TypedModel| {
            m.nodes()
                .iter()
                .filter(|n| n.op_is::<tract_onnx::tract_core::ops::cnn::conv::Im2Col>())
                .count()
        };
        let plan = |replace: bool| {
            let mut m = tract_onnx::onnx().model_for_path(&path).unwrap();
            m.set_input_fact(0, f32::fact([1, 1, WINDOW_FRAMES, N_MELS]).into())
                .unwrap();
            let mut m = m.into_optimized().unwrap();
            fold_constant_chains(&mut m).unwrap();
            if replace {
                let before = im2cols(&m);
                assert!(
                    before >= 8,
                    "CNN9 has 8 convolutions, found {before} im2cols"
                );
                assert_eq!(packed_patches::replace_im2col(&mut m).unwrap(), before);
                assert_eq!(im2cols(&m), 0);
            }
            m.into_runnable().unwrap()
        };
        let (tract_plan, our_plan) = (plan(false), plan(true));
        let mut ours = SimpleState::new(&our_plan).unwrap();
        for seed in [1u64, 2] {
            let mut s = seed;
            let values: Vec<f32> = (0..WINDOW_FRAMES * N_MELS)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            let x = Tensor::from_shape(&[1, 1, WINDOW_FRAMES, N_MELS], &values).unwrap();
            let expected = tract_plan.run(tvec![x.clone().into_tvalue()]).unwrap();
            let got = ours.run(tvec![x.into_tvalue()]).unwrap();
            assert_eq!(expected.len(), got.len());
            for (e, g) in expected.iter().zip(&got) {
                let e = e.try_as_plain_ram().unwrap();
                let g = g.try_as_plain_ram().unwrap();
                assert_eq!(e.as_slice::<f32>().unwrap(), g.as_slice::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn never_folds_into_something_bigger() {
        // A cast whose result is the end of the chain (4× its input) stays in the plan.
        let mut m = TypedModel::default();
        let x = m.add_source("x", i32::fact([1 << 21])).unwrap();
        let k = m
            .add_const(
                "k",
                Tensor::from_shape(&[1 << 21], &vec![2i8; 1 << 21]).unwrap(),
            )
            .unwrap();
        let c = m
            .wire_node("k_as_i32", cast(i32::datum_type()), &[k])
            .unwrap();
        let y = m
            .wire_node("y", tract_onnx::tract_core::ops::math::add(), &[x, c[0]])
            .unwrap();
        m.select_output_outlets(&y).unwrap();
        let mut m = m.into_optimized().unwrap();
        let before = m.nodes().len();
        fold_constant_chains(&mut m).unwrap();
        assert_eq!(m.nodes().len(), before);
    }
}
