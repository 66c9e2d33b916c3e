//! Convolution patches written straight into the matrix product's packed layout.
//!
//! tract 0.23 feeds each quantised conv's patch matrix (im2col) through a packing writer that
//! stores byte by byte, with panel bookkeeping per byte, whenever an image row is longer than one
//! panel: on x86 that was half of each CNN9 window (≈17 of 34 ms profiled). [`PackedPatches`]
//! produces the same packed bytes panel by panel instead, from a copy of the input with the zero
//! point around it, so each row of a panel is one contiguous copy (K-major packing) or four rows
//! interleaved (the K=4-inner packing of the VNNI and dot-product kernels). It takes over only
//! where it knows the layout exactly: 2-D, NCHW with a batch of one, stride and dilation 1, one
//! group, 8-bit values. The tests check it byte for byte against tract's own op.

use anyhow::{ensure, Context};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{
    EvalContext, EvalOp, Op, OpState, StaticName, TypedModelPatch, TypedOp,
};
use tract_onnx::tract_core::ops::cnn::conv::Im2Col;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::tract_linalg::mmm::{
    EagerPackedInput, MMMInputFormat, MMMInputValue, PackedExoticFact, PackedMatrixStorage,
};
use tract_onnx::tract_core::tract_linalg::pack::{PackedFormat, PackedI8K4};

/// The widest panel handled (lanes per panel); tract's kernels use 1 to 64.
const MAX_LANES: usize = 64;

/// Replaces every tract `Im2col` of `model` that [`PackedPatches`] can do. Returns how many.
pub fn replace_im2col(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(im2col) = node.op_as::<Im2Col>() else {
            continue;
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let Some(op) = PackedPatches::for_im2col(im2col, input, &node.outputs[0].fact)? else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    model.compact()?;
    Ok(replaced)
}

/// Where a stride-1 2-D convolution reads. Patches come from a copy of the image with its padding
/// made real (`padded_height × padded_width` per channel), so no copy needs a bounds check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    pad_top: usize,
    pad_left: usize,
    padded_height: usize,
    padded_width: usize,
    out_width: usize,
    /// Output positions (`out_height × out_width`): the matrix product's `n`.
    n: usize,
    /// Offset in the padded image of each patch row `k` — (channel, kernel y, kernel x), in the
    /// order tract lays the kernel out — relative to the output position's own offset.
    k_offsets: Vec<usize>,
}

impl Geometry {
    /// Copies `image` (CHW) into `padded` with `pad` around it. `padded` keeps its allocation.
    fn pad_into(&self, image: &[u8], pad: u8, padded: &mut Vec<u8>) {
        let plane = self.padded_height * self.padded_width;
        padded.clear();
        padded.resize(self.channels * plane, pad);
        for (src, dst) in image
            .chunks_exact(self.height * self.width)
            .zip(padded.chunks_exact_mut(plane))
        {
            for (y, row) in src.chunks_exact(self.width).enumerate() {
                let at = (y + self.pad_top) * self.padded_width + self.pad_left;
                dst[at..at + self.width].copy_from_slice(row);
            }
        }
    }

    /// Splits the output positions of the panel starting at `n0` (`lanes` of them) into runs
    /// along one output row: (first lane, offset in the padded image, length).
    fn runs(&self, n0: usize, lanes: usize, runs: &mut [Run; MAX_LANES]) -> usize {
        let mut count = 0;
        let mut lane = 0;
        while lane < lanes {
            let (y, x) = ((n0 + lane) / self.out_width, (n0 + lane) % self.out_width);
            let len = (lanes - lane).min(self.out_width - x);
            runs[count] = Run {
                lane,
                offset: y * self.padded_width + x,
                len,
            };
            count += 1;
            lane += len;
        }
        count
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Run {
    lane: usize,
    offset: usize,
    len: usize,
}

/// How the matrix product wants the patch matrix: panels of `r` output positions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Packing {
    /// Row `k` of a panel is `r` consecutive values; panels are `panel_len` long.
    KMajor { r: usize, panel_len: usize },
    /// Rows interleaved by four: element (k, lane) at `(k / 4)·4r + 4·lane + k % 4`, with `k`
    /// padded to a multiple of four with zeros.
    K4 { r: usize },
}

/// The patch matrix of one convolution, packed for tract's matrix product: a drop-in for
/// tract's `Im2col` (same inputs — the image and optionally its zero point — same output).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackedPatches {
    geometry: Geometry,
    packing: Packing,
    format: Box<dyn MMMInputFormat>,
    alignment: usize,
}

impl PackedPatches {
    /// The replacement for `im2col` reading `input` and producing `output`, if this op can do
    /// exactly what it does.
    pub fn for_im2col(
        im2col: &Im2Col,
        input: &TypedFact,
        output: &TypedFact,
    ) -> TractResult<Option<Self>> {
        let spec = &im2col.pool_spec;
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
        let Some(shape) = input.shape.as_concrete() else {
            return Ok(None);
        };
        if im2col.group != 1
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || !ones(&spec.strides)
            || !ones(&spec.dilations)
            || input.datum_type.size_of() != 1
            || shape.len() != 4
            || shape[0] != 1
            || shape[1] != spec.input_channels
        {
            return Ok(None);
        }
        let Some(packed) = output
            .exotic_fact()
            .and_then(|f| f.downcast_ref::<PackedExoticFact>())
        else {
            return Ok(None);
        };
        let (channels, height, width) = (shape[1], shape[2], shape[3]);
        let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        let k = packed.k;
        if k != channels * kh * kw {
            return Ok(None);
        }
        let (packing, alignment) = if let Some(f) = packed.format.downcast_ref::<PackedFormat>() {
            let panel_len = f.single_panel_len(k);
            (Packing::KMajor { r: f.r, panel_len }, f.alignment())
        } else if let Some(f) = packed.format.downcast_ref::<PackedI8K4>() {
            (Packing::K4 { r: f.r }, f.alignment())
        } else {
            return Ok(None);
        };
        let r = match packing {
            Packing::KMajor { r, .. } | Packing::K4 { r } => r,
        };
        if r == 0 || r > MAX_LANES {
            return Ok(None);
        }
        let padding = spec.computed_padding(&[height, width]);
        let (out_height, out_width) = (padding[0].convoluted, padding[1].convoluted);
        let (pad_top, pad_left) = (padding[0].pad_before, padding[1].pad_before);
        let padded_height = out_height + kh - 1;
        let padded_width = out_width + kw - 1;
        if out_height == 0
            || out_width == 0
            || padded_height < pad_top + height
            || padded_width < pad_left + width
        {
            return Ok(None);
        }
        let mut k_offsets = Vec::with_capacity(k);
        for c in 0..channels {
            for y in 0..kh {
                for x in 0..kw {
                    k_offsets.push((c * padded_height + y) * padded_width + x);
                }
            }
        }
        Ok(Some(Self {
            geometry: Geometry {
                channels,
                height,
                width,
                pad_top,
                pad_left,
                padded_height,
                padded_width,
                out_width,
                n: out_height * out_width,
                k_offsets,
            },
            packing,
            format: packed.format.clone(),
            alignment,
        }))
    }

    fn k(&self) -> usize {
        self.geometry.k_offsets.len()
    }

    fn panel_len(&self) -> usize {
        match self.packing {
            Packing::KMajor { panel_len, .. } => panel_len,
            Packing::K4 { r } => self.k().div_ceil(4) * 4 * r,
        }
    }

    fn run(&self, padded: &mut Vec<u8>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let image = &inputs[0];
        let dt = image.datum_type();
        let g = &self.geometry;
        ensure!(
            dt.size_of() == 1 && image.shape() == [1, g.channels, g.height, g.width],
            "packed patches: input {:?} {:?} is not the one planned",
            dt,
            image.shape()
        );
        let pad = match inputs.get(1) {
            Some(zero_point) => *zero_point
                .try_as_plain_ram()?
                .as_bytes()
                .first()
                .context("empty zero point")?,
            None => 0,
        };
        g.pad_into(image.try_as_plain_ram()?.as_bytes(), pad, padded);
        let panel_len = self.panel_len();
        let r = match self.packing {
            Packing::KMajor { r, .. } | Packing::K4 { r } => r,
        };
        let panels = g.n.div_ceil(r);
        // SAFETY: every byte is written below (values, lane padding and k padding).
        let mut data =
            unsafe { Tensor::uninitialized_aligned_dt(dt, &[panels * panel_len], self.alignment)? };
        let out = data.as_bytes_mut();
        let mut runs = [Run::default(); MAX_LANES];
        for (p, panel) in out.chunks_exact_mut(panel_len).enumerate() {
            let lanes = r.min(g.n - p * r);
            let count = g.runs(p * r, lanes, &mut runs);
            let runs = &runs[..count];
            match self.packing {
                Packing::KMajor { r, .. } => fill_k_major(g, padded, runs, r, lanes, panel),
                Packing::K4 { r } => fill_k4(g, padded, runs, r, panel),
            }
        }
        let value = EagerPackedInput {
            fact: PackedExoticFact {
                format: self.format.clone(),
                k: self.k(),
                mn: g.n.to_dim(),
            },
            packed: data.into_blob()?.into(),
            panel_bytes: panel_len,
            mn: g.n,
        };
        let values: TVec<Box<dyn MMMInputValue>> = tvec![Box::new(value) as _];
        let output = PackedMatrixStorage::new_batched(&[1, 1], values).into_tensor(dt);
        Ok(tvec!(output.into_tvalue()))
    }
}

/// One panel in K-major packing: row `k` holds the `r` lanes of patch row `k`.
fn fill_k_major(
    g: &Geometry,
    padded: &[u8],
    runs: &[Run],
    r: usize,
    lanes: usize,
    panel: &mut [u8],
) {
    let (rows, tail) = panel.split_at_mut(g.k_offsets.len() * r);
    for (row, &k_offset) in rows.chunks_exact_mut(r).zip(&g.k_offsets) {
        match runs {
            // The common case: the whole panel lies in one output row.
            [run] if run.len == r => copy_row(row, &padded[k_offset + run.offset..][..r]),
            _ => {
                for run in runs {
                    let src = &padded[k_offset + run.offset..][..run.len];
                    row[run.lane..run.lane + run.len].copy_from_slice(src);
                }
            }
        }
        row[lanes..].fill(0);
    }
    tail.fill(0);
}

/// `dst.copy_from_slice(src)`, as one fixed-size move for tract's panel widths (a call to
/// `memcpy` per 4 to 16 bytes would cost more than the copy).
#[inline(always)]
fn copy_row(dst: &mut [u8], src: &[u8]) {
    match dst.len() {
        16 => dst[..16].copy_from_slice(&src[..16]),
        8 => dst[..8].copy_from_slice(&src[..8]),
        4 => dst[..4].copy_from_slice(&src[..4]),
        _ => dst.copy_from_slice(src),
    }
}

/// One panel in K=4-inner packing: each block of four patch rows interleaved lane by lane.
fn fill_k4(g: &Geometry, padded: &[u8], runs: &[Run], r: usize, panel: &mut [u8]) {
    match r {
        16 => fill_k4_lanes::<16>(g, padded, runs, panel),
        8 => fill_k4_lanes::<8>(g, padded, runs, panel),
        _ => {
            let k = g.k_offsets.len();
            for (kb, block) in panel.chunks_exact_mut(4 * r).enumerate() {
                block.fill(0);
                for (kr, &k_offset) in g.k_offsets[kb * 4..(kb * 4 + 4).min(k)].iter().enumerate() {
                    for run in runs {
                        let src = &padded[k_offset + run.offset..][..run.len];
                        for (i, &v) in src.iter().enumerate() {
                            block[(run.lane + i) * 4 + kr] = v;
                        }
                    }
                }
            }
        }
    }
}

/// [`fill_k4`] for the panel widths of tract's VNNI (16, 8) and dot-product (8) kernels: each
/// block's four rows gathered into registers-sized arrays, then interleaved.
fn fill_k4_lanes<const R: usize>(g: &Geometry, padded: &[u8], runs: &[Run], panel: &mut [u8]) {
    let mut rows = [[0u8; R]; 4];
    for (kb, block) in panel.chunks_exact_mut(4 * R).enumerate() {
        for (kr, row) in rows.iter_mut().enumerate() {
            match (g.k_offsets.get(kb * 4 + kr), runs) {
                (None, _) => *row = [0; R],
                // The common case: the whole panel lies in one output row.
                (Some(&k_offset), [run]) if run.len == R => {
                    row.copy_from_slice(&padded[k_offset + run.offset..][..R])
                }
                (Some(&k_offset), _) => {
                    *row = [0; R];
                    for run in runs {
                        let src = &padded[k_offset + run.offset..][..run.len];
                        row[run.lane..run.lane + run.len].copy_from_slice(src);
                    }
                }
            }
        }
        interleave4(&rows, block);
    }
}

/// `out[4i + j] = rows[j][i]`: four rows of `R` lanes into one K4 block of `4R` bytes.
#[inline]
fn interleave4<const R: usize>(rows: &[[u8; R]; 4], out: &mut [u8]) {
    let out = &mut out[..4 * R];
    #[cfg(target_arch = "x86_64")]
    if R == 16 {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; unaligned loads of the four 16-byte rows and stores
        // into the 64 bytes of `out`.
        unsafe {
            let a = _mm_loadu_si128(rows[0].as_ptr().cast());
            let b = _mm_loadu_si128(rows[1].as_ptr().cast());
            let c = _mm_loadu_si128(rows[2].as_ptr().cast());
            let d = _mm_loadu_si128(rows[3].as_ptr().cast());
            let ab_lo = _mm_unpacklo_epi8(a, b);
            let ab_hi = _mm_unpackhi_epi8(a, b);
            let cd_lo = _mm_unpacklo_epi8(c, d);
            let cd_hi = _mm_unpackhi_epi8(c, d);
            let p = out.as_mut_ptr();
            _mm_storeu_si128(p.cast(), _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(p.add(16).cast(), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(p.add(32).cast(), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(p.add(48).cast(), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
        return;
    }
    for (i, o) in out.chunks_exact_mut(4).enumerate() {
        o.copy_from_slice(&[rows[0][i], rows[1][i], rows[2][i], rows[3][i]]);
    }
}

impl Op for PackedPatches {
    fn name(&self) -> StaticName {
        "PackedPatches".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?}, k: {}, n: {}",
            self.packing,
            self.k(),
            self.geometry.n
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for PackedPatches {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&mut Vec::new(), inputs)?))
    }

    /// The padded copy of the image is kept between windows: no allocation for it per run.
    fn state(&self, _ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::new(PaddedImage::default())))
    }
}

impl TypedOp for PackedPatches {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = PackedExoticFact {
            format: self.format.clone(),
            k: self.k(),
            mn: self.geometry.n.to_dim(),
        };
        Ok(tvec!(inputs[0]
            .datum_type
            .fact([1usize, 1])
            .with_exotic_fact(fact)))
    }
}

/// The per-plan state of a [`PackedPatches`]: its padded image buffer.
#[derive(Clone, Debug, Default)]
struct PaddedImage(Vec<u8>);

impl OpState for PaddedImage {
    fn eval(
        &mut self,
        _ctx: &EvalContext,
        op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let op = op
            .downcast_ref::<PackedPatches>()
            .context("PaddedImage belongs to PackedPatches")?;
        op.run(&mut self.0, inputs)
    }

    fn reset_lanes(
        &mut self,
        _lanes: &[tract_onnx::tract_core::internal::LaneId],
    ) -> TractResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::tract_linalg::mmm::MatMatMul;
    use tract_onnx::tract_core::tract_linalg::MmmDispatch;

    /// A deterministic pseudo-random image (xorshift), every byte value likely.
    fn image(len: usize, seed: u32) -> Vec<i8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as i8
            })
            .collect()
    }

    /// Every 8-bit activation packing the kernels of this machine can ask for, with a kernel
    /// that asks for it: (kernel, packing index).
    fn packings() -> Vec<(Box<dyn MatMatMul>, usize)> {
        let mut seen: Vec<Box<dyn MMMInputFormat>> = Vec::new();
        let mut found = Vec::new();
        for mmm in MmmDispatch::native().runnable() {
            for (i, (_, b)) in mmm.packings().iter().enumerate() {
                let byte = b
                    .downcast_ref::<PackedFormat>()
                    .is_some_and(|f| f.dt.size_of() == 1)
                    || b.downcast_ref::<PackedI8K4>().is_some();
                if byte && !seen.iter().any(|s| s == b) {
                    seen.push(b.clone());
                    found.push((mmm.clone(), i));
                }
            }
        }
        found
    }

    /// One convolution's input and patches: channels × height × width, kernel (h, w), padding
    /// before and after each axis (top, bottom, left, right).
    struct Case {
        image: [usize; 3],
        kernel: [usize; 2],
        pad: [usize; 4],
    }

    /// CNN9's 3×3 "same" convs at widths that split panels across rows (12, 24, 7), a
    /// one-channel first layer (k = 9: K4 padding), an asymmetric kernel and padding, and no
    /// padding at all.
    const CASES: &[Case] = &[
        Case {
            image: [3, 10, 96],
            kernel: [3, 3],
            pad: [1, 1, 1, 1],
        },
        Case {
            image: [1, 9, 40],
            kernel: [3, 3],
            pad: [1, 1, 1, 1],
        },
        Case {
            image: [5, 12, 12],
            kernel: [3, 3],
            pad: [1, 1, 1, 1],
        },
        Case {
            image: [4, 6, 24],
            kernel: [3, 3],
            pad: [1, 1, 1, 1],
        },
        Case {
            image: [2, 5, 7],
            kernel: [3, 3],
            pad: [1, 1, 1, 1],
        },
        Case {
            image: [3, 8, 20],
            kernel: [5, 3],
            pad: [2, 0, 1, 1],
        },
        Case {
            image: [2, 6, 33],
            kernel: [3, 3],
            pad: [0, 0, 0, 0],
        },
    ];

    #[test]
    fn packs_the_same_bytes_as_tracts_im2col() {
        let packings = packings();
        assert!(!packings.is_empty(), "no 8-bit packing on this machine");
        let mut checked = (0, 0);
        for (mmm, packing) in &packings {
            for (
                case,
                &Case {
                    image: [c, h, w],
                    kernel,
                    pad,
                },
            ) in CASES.iter().enumerate()
            {
                for zero_point in [0i8, -7] {
                    let spec = PoolSpec {
                        data_format: DataFormat::NCHW,
                        kernel_shape: tvec!(kernel[0], kernel[1]),
                        padding: PaddingSpec::Explicit(
                            tvec!(pad[0], pad[2]),
                            tvec!(pad[1], pad[3]),
                        ),
                        dilations: None,
                        strides: None,
                        input_channels: c,
                        output_channels: 8,
                    };
                    let k = c * kernel[0] * kernel[1];
                    let shape = [1, c, h, w];
                    let fact = i8::fact(shape);
                    let im2col =
                        Im2Col::new(spec, 1, k, &fact.shape, mmm.clone(), *packing).unwrap();
                    let zp_fact = TypedFact::try_from(tensor0(zero_point)).unwrap();
                    let out_fact = im2col.output_facts(&[&fact, &zp_fact]).unwrap().remove(0);
                    let ours = PackedPatches::for_im2col(&im2col, &fact, &out_fact)
                        .unwrap()
                        .unwrap_or_else(|| panic!("case {case} not taken over"));
                    let x = Tensor::from_shape(&shape, &image(c * h * w, case as u32 + 1)).unwrap();
                    let inputs =
                        || tvec![x.clone().into_tvalue(), tensor0(zero_point).into_tvalue()];
                    let theirs_out = im2col.eval_out_of_plan(inputs()).unwrap().unwrap();
                    let ours_out = ours.eval_out_of_plan(inputs()).unwrap().unwrap();
                    let theirs = theirs_out[0]
                        .try_storage_as::<PackedMatrixStorage>()
                        .unwrap();
                    let ours_st = ours_out[0].try_storage_as::<PackedMatrixStorage>().unwrap();
                    let (t, o) = (theirs.value_at(&[0, 0]), ours_st.value_at(&[0, 0]));
                    assert_eq!((t.k(), t.mn()), (o.k(), o.mn()));
                    let r = t.format().r();
                    // tract leaves K-major panels' end padding unwritten: compare k·r values.
                    let compared = match ours.packing {
                        Packing::KMajor { r, .. } => k * r,
                        Packing::K4 { .. } => ours.panel_len(),
                    };
                    for p in 0..o.mn().div_ceil(r) {
                        let t = unsafe {
                            std::slice::from_raw_parts(t.panel_bytes(p, None).unwrap(), compared)
                        };
                        let o = unsafe {
                            std::slice::from_raw_parts(o.panel_bytes(p, None).unwrap(), compared)
                        };
                        assert_eq!(
                            t, o,
                            "case {case}, {:?}, zero point {zero_point}, panel {p}",
                            ours.packing
                        );
                    }
                    match ours.packing {
                        Packing::KMajor { .. } => checked.0 += 1,
                        Packing::K4 { .. } => checked.1 += 1,
                    }
                }
            }
        }
        assert!(checked.0 > 0, "the K-major packing was never exercised");
        eprintln!(
            "compared {} K-major and {} K4 packings",
            checked.0, checked.1
        );
    }

    #[test]
    fn leaves_what_it_cannot_do_to_tract() {
        let mmm = MmmDispatch::native().runnable()[0].clone();
        let fact = i8::fact([1, 2, 8, 8]);
        let spec = |strides: Option<TVec<usize>>| PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(3, 3),
            padding: PaddingSpec::Valid,
            dilations: None,
            strides,
            input_channels: 2,
            output_channels: 4,
        };
        let Some(packing) = mmm.packings().iter().position(|(_, b)| {
            b.downcast_ref::<PackedFormat>()
                .is_some_and(|f| f.dt.size_of() == 1)
                || b.downcast_ref::<PackedI8K4>().is_some()
        }) else {
            return;
        };
        let strided = Im2Col::new(
            spec(Some(tvec!(2, 2))),
            1,
            18,
            &fact.shape,
            mmm.clone(),
            packing,
        )
        .unwrap();
        let out = strided.output_facts(&[&fact]).unwrap().remove(0);
        assert!(PackedPatches::for_im2col(&strided, &fact, &out)
            .unwrap()
            .is_none());
        let plain = Im2Col::new(spec(None), 1, 18, &fact.shape, mmm, packing).unwrap();
        let out = plain.output_facts(&[&fact]).unwrap().remove(0);
        assert!(PackedPatches::for_im2col(&plain, &fact, &out)
            .unwrap()
            .is_some());
        let f32_fact = f32::fact([1, 2, 8, 8]);
        assert!(PackedPatches::for_im2col(&plain, &f32_fact, &out)
            .unwrap()
            .is_none());
    }
}
