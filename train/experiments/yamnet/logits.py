"""YAMNet (AudioSet, 521 classes) logits of every corpus clip, per 0.96 s patch (hop 0.48 s).

    python logits.py CACHE                  → CACHE/yamnet/logits.npz
    python logits.py CACHE --noisy SNR SEED  → CACHE/yamnet/logits-noisy-snr<SNR>-seed<SEED>.npz

Each holds "<dataset>/<rel_path>" → patches × 521. The noisy variant mixes in the ambience that
`sfxtag-train embed --noisy` mixes in (the same choice and offset, by the same FNV-1a hash of the
clip's path, its group and the seed; the same SNR over the clip), at 44.1 kHz, then resamples.

YAMNet's input: 16 kHz mono, |STFT| (25 ms periodic Hann window, 10 ms hop, 512-point FFT),
64 HTK mel bands from 125 to 7500 Hz, log(mel + 1e-6), patches of 96 frames every 48; a clip
shorter than one patch is zero-padded (as the wheel's own preprocessing does).
"""
import json
import os
import sys
import time
from math import gcd

import numpy as np
import onnxruntime as ort
import soundfile as sf
from scipy.signal import resample_poly

SR = 16000
WIN, HOP, N_FFT, N_MELS, PATCH, PATCH_HOP = 400, 160, 512, 64, 96, 48


def hz_to_mel(f):
    return 1127.0 * np.log(1.0 + f / 700.0)


def mel_filterbank(fmin=125.0, fmax=7500.0):
    freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), N_MELS + 2)
    m = hz_to_mel(freqs)
    fb = np.zeros((N_FFT // 2 + 1, N_MELS))
    for i in range(N_MELS):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[:, i] = np.maximum(0.0, np.minimum((m - lo) / (mid - lo), (hi - m) / (hi - mid)))
    return fb


FILTERBANK = mel_filterbank()
WINDOW = np.hanning(WIN + 1)[:-1]  # periodic


def patches(x):
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    frames = 1 + (len(x) - WIN) // HOP
    idx = np.arange(WIN)[None] + HOP * np.arange(frames)[:, None]
    log_mel = np.log(np.abs(np.fft.rfft(x[idx] * WINDOW, n=N_FFT)) @ FILTERBANK + 1e-6)
    if log_mel.shape[0] < PATCH:
        log_mel = np.pad(log_mel, ((0, PATCH - log_mel.shape[0]), (0, 0)))
    starts = range(0, log_mel.shape[0] - PATCH + 1, PATCH_HOP)
    return np.stack([log_mel[s : s + PATCH][None] for s in starts]).astype(np.float32)


def resample(x, sr, rate):
    if sr == rate:
        return x
    g = gcd(sr, rate)
    return resample_poly(x, rate // g, sr // g).astype(np.float32)


def load(path, rate):
    """Mono at `rate` Hz."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(x.mean(1), sr, rate)


def fnv(parts):
    # The trainer's FNV-1a over byte strings, 0xff after each part.
    h = 0xCBF29CE484222325
    for p in parts:
        for b in p:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ 0xFF) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Backgrounds:
    """The trainer's ambience pool: AMBIENCE clips of 3 s or more, not duplicates, in corpus
    order, as (group, path)."""

    def __init__(self, cache, root, index):
        import csv

        ucs = {r["CatID"]: r["Category"] for r in csv.DictReader(open(f"{root}/data/ucs/ucs_v8.2.1.csv"))}
        dups = {(r["dataset"], r["rel_path"]) for r in csv.DictReader(open(f"{cache}/duplicates.csv"))}
        self.pool, self.audio = [], {}
        for d in index["datasets"]:
            p = f"{cache}/prepared/{d['name']}/index.json"
            if not os.path.exists(p):
                continue
            for c in json.load(open(p))["clips"]:
                if (ucs.get(c["ucs_catid"] or "") == "AMBIENCE" and c["duration_s"] >= 3.0
                        and (d["name"], c["rel_path"]) not in dups):
                    path = c["path"] if os.path.isabs(c["path"]) else os.path.join(root, c["path"])
                    self.pool.append((d.get("group") or d["name"], path))

    def mix(self, signal, rel_path, group, snr_db, seed):
        others = [(g, p) for g, p in self.pool if g != group]
        h = fnv([rel_path.encode(), group.encode(), seed.to_bytes(8, "little")])
        ng, path = others[h % len(others)]
        if path not in self.audio:
            self.audio[path] = load(path, 44100)
        noise = self.audio[path]
        offset = (h >> 32) % max(len(noise), 1)
        at = noise[(offset + np.arange(len(signal))) % len(noise)]
        s_rms, n_rms = np.sqrt(np.mean(signal.astype(np.float64) ** 2)), np.sqrt(np.mean(at.astype(np.float64) ** 2))
        if s_rms <= 0 or n_rms <= 0:
            return signal, ng
        return signal + np.float32(s_rms / n_rms / 10 ** (snr_db / 20)) * at, ng


def main():
    cache = sys.argv[1]
    noisy = None
    if len(sys.argv) == 5 and sys.argv[2] == "--noisy":
        noisy = (float(sys.argv[3]), int(sys.argv[4]))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(f"{cache}/yamnet/model/model.onnx", so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    index = json.load(open(f"{cache}/corpus.json"))
    group_of = {d["name"]: d.get("group") or d["name"] for d in index["datasets"]}
    backgrounds = Backgrounds(cache, root, index) if noisy else None
    out, groups, failed = {}, {}, []
    t0 = time.time()
    for n, c in enumerate(index["clips"]):
        path = c["path"] if os.path.isabs(c["path"]) else os.path.join(root, c["path"])
        try:
            if noisy:
                x, ng = backgrounds.mix(load(path, 44100), c["rel_path"], group_of[c["dataset"]], *noisy)
                groups[f"{c['dataset']}/{c['rel_path']}"] = ng
                p = patches(resample(x, 44100, SR))
            else:
                p = patches(load(path, SR))
            out[f"{c['dataset']}/{c['rel_path']}"] = np.concatenate(
                [sess.run(None, {name: p[i : i + 1]})[0] for i in range(len(p))]
            ).astype(np.float32)
        except Exception as e:  # an unreadable clip is listed, not fatal
            failed.append((c["path"], str(e)))
        if n % 500 == 0:
            print(f"yamnet logits: {n}/{len(index['clips'])} clips, {time.time() - t0:.0f} s", flush=True)
    name = "logits.npz" if not noisy else f"logits-noisy-snr{noisy[0]:g}-seed{noisy[1]}.npz"
    np.savez(f"{cache}/yamnet/{name}", **out)
    if noisy:
        json.dump(groups, open(f"{cache}/yamnet/{name[:-4]}-groups.json", "w"))
    for p, e in failed:
        print(f"skipped {p}: {e}")
    print(f"yamnet logits: {len(out)} clips, {len(failed)} skipped, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
