#!/usr/bin/env python3
"""Reference outputs of the released aiSFX model (aisfx 0.1.2) for the golden clips.

For every clip listed in tests/golden/golden.json (written by make_golden.py)
this script:
  1. reads the Essentia log-mel <name>.essentia.f32 and checks it against a
     fresh run of aisfx's own compute_spectrogram (inference.py's arguments) on
     tests/golden/<name>.wav (equal up to 1e-6: Essentia itself is not
     bit-reproducible run to run in near-silent frames, see README.md); the
     stored golden, not the fresh run, is what goes into the model, so the
     outputs here are a pure function of the checked-in files;
  2. builds the model input exactly as aisfx.inference.model_get_embedding does:
     spectrogram_normalize(spec, 'original') (divide by 9.457798957824707),
     blocking(block_size=EMB_BLOCK_LENGTH=100, hop=compute_hopSize(100, 0.5)=50,
     drop_partial_block=True), torch.Tensor(...) (float32).  aisfx asserts
     frames > 50 (compute_hopSize); for clips with <= 50 frames the spectrogram
     is zero-padded to 100 frames and passed as one window (architecture.md §3) --
     for 51..99 frames aisfx's blocking pads the same way by itself;
  3. loads the released checkpoint with aisfx's load_bestModel on CPU and runs
     model.get_embedding (512-d) and every head, logits = model.fc[idx](emb)
     with idx = ds_dict[dataset][0] (what CrossNet.forward does);
  4. writes tests/golden/aisfx/<name>.windows.f32 [n,100,96],
     <name>.embedding.f32 [n,512], <name>.logits_<dataset>.f32 [n,C]
     (raw little-endian float32, row-major) and aisfx.json.
The windows are [n, 100 (time), 96 (mel)]; the model itself unsqueezes to
[n, 1, 100, 96].

The checkpoint pickle holds numpy objects; torch >= 2.6 loads it with
weights_only=True only when these are allow-listed:
numpy.core.multiarray.scalar, numpy.dtype, numpy.dtypes.Int64DType,
_codecs.encode (done below; no weights_only=False needed).

Run from the repository root, after make_golden.py:

    .venv-golden/bin/python tests/golden/make_aisfx_golden.py
"""

import _codecs
import json
import os

import numpy as np
import torch

import aisfx.inference as inf
from aisfx.preprocessing import blocking, compute_hopSize, spectrogram_normalize
from aisfx.spectrogram.spectrogram_essentia import compute_spectrogram

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "aisfx")
EMB_HOP = 0.5
DROP_PARTIAL = True


def load_checkpoint():
    allow = [np.core.multiarray.scalar, np.dtype, np.dtypes.Int64DType, _codecs.encode]
    with torch.serialization.safe_globals(allow):
        weights, ds_dict = torch.load(inf.get_path_modelWeights(), map_location="cpu",
                                      weights_only=True)
    return weights, ds_dict


def model_windows(spec):
    """Normalised [n, 100, 96] float32 windows, as aisfx.inference.model_get_embedding."""
    spec = spectrogram_normalize(spec, spec_norm="original")
    block = inf.EMB_BLOCK_LENGTH
    if spec.shape[0] > block * EMB_HOP:  # aisfx's own path (compute_hopSize asserts this)
        blocks = blocking(spec, block_size=block,
                          hop_size=compute_hopSize(block, EMB_HOP, spec),
                          drop_partial_block=DROP_PARTIAL)
    else:  # too short for aisfx's assertion: zero-pad to one full window
        blocks = np.vstack((spec, np.zeros((block - spec.shape[0], spec.shape[1]))))[None]
    return torch.Tensor(blocks)  # float64 -> float32, exactly like model_get_embedding


def main():
    torch.manual_seed(0)
    with open(os.path.join(HERE, "golden.json")) as f:
        golden = json.load(f)
    os.makedirs(OUT, exist_ok=True)

    weights, ds_dict = load_checkpoint()
    model = inf.load_bestModel(weights, ds_dict, "cpu")

    clips = []
    for c in golden["clips"]:
        name = c["name"]
        spec = compute_spectrogram(filename=os.path.join(HERE, c["wav"]), sr=inf.SAMPLE_RATE,
                                   block_size=inf.SPEC_BLOCK_LENGTH, hop_size=inf.SPEC_HOP_LENGTH,
                                   n_mels=inf.MEL_BINS, f_min=inf.F_MIN, f_max=inf.F_MAX)
        stored = np.fromfile(os.path.join(HERE, c["essentia"]), dtype="<f4").reshape(-1, 96)
        assert np.abs(spec - stored).max() <= 1e-6, f"{name}: Essentia output differs from golden"
        spec = stored

        x = model_windows(spec)
        with torch.no_grad():
            emb = model.get_embedding(x)
            logits = {ds: model.fc[idx](emb) for ds, (idx, _) in ds_dict.items()}
            if spec.shape[0] > inf.EMB_BLOCK_LENGTH * EMB_HOP:
                # cross-check against the package's own entry point
                ref = inf.model_get_embedding(spectrogram_normalize(spec, "original"), EMB_HOP,
                                              DROP_PARTIAL, model, "cpu")
                assert torch.equal(ref, emb), f"{name}: differs from model_get_embedding"
            # and against CrossNet.forward for one head
            ds0 = next(iter(ds_dict))
            _, fwd = model(x, ds0)
            assert torch.equal(fwd, logits[ds0])

        x.numpy().astype("<f4").tofile(os.path.join(OUT, f"{name}.windows.f32"))
        emb.numpy().astype("<f4").tofile(os.path.join(OUT, f"{name}.embedding.f32"))
        for ds, lg in logits.items():
            assert lg.shape == (x.shape[0], ds_dict[ds][1])
            lg.numpy().astype("<f4").tofile(os.path.join(OUT, f"{name}.logits_{ds}.f32"))
        clips.append({
            "name": name, "frames": int(spec.shape[0]), "n_windows": int(x.shape[0]),
            "padded_short_clip": bool(spec.shape[0] <= inf.EMB_BLOCK_LENGTH * EMB_HOP),
            "windows": f"{name}.windows.f32", "embedding": f"{name}.embedding.f32",
            "logits": {ds: f"{name}.logits_{ds}.f32" for ds in ds_dict},
            "top1": {ds: [int(i) for i in lg.argmax(dim=1)] for ds, lg in logits.items()},
        })
        print(name, spec.shape[0], "frames ->", x.shape[0], "windows")

    meta = {
        "generator": (f"tests/golden/make_aisfx_golden.py; aisfx 0.1.2 checkpoint.pth, torch "
                      f"{torch.__version__}, numpy {np.__version__}; CPU, eval mode; regenerate: "
                      f".venv-golden/bin/python tests/golden/make_aisfx_golden.py"),
        "format": "raw little-endian float32, row-major; windows [n,100,96] = the exact model "
                  "input (log-mel / 9.457798957824707; model adds the channel dim -> "
                  "[n,1,100,96]); embedding [n,512]; logits_<dataset> [n,n_classes]",
        "windowing": "100 frames, hop 50, drop_partial_block=True; <= 50 frames: zero-padded to 100",
        "ds_dict": {ds: [int(i), int(n)] for ds, (i, n) in ds_dict.items()},
        "torch": torch.__version__,
        "clips": clips,
    }
    with open(os.path.join(OUT, "aisfx.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
