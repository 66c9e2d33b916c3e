"""Late fusion: the heads' out-of-fold posteriors (`heads --posteriors FILE`) with a YAMNet
head trained on the same folds (a logistic regression on YAMNet's clip logits, mean and max over
its patches, trained on the fold's clean and noisy clips), by a weighted geometric mean.

    python fuse.py CACHE POSTERIORS.jsonl LOSO.json [METHOD]     (METHOD default mlp-noise)

Prints the recall per Category (clean, pooled over folds) of the method alone and fused with
equal weights, then mean top-1 for each weight. Top-1 per fold is over the fold's test clips,
as in the report (checked: the method's own top-1 per fold is recomputed from the file and must
match LOSO.json).
"""
import collections
import json
import math
import sys

import numpy as np
from common import clip_features, fit_linear

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)  # weight of the heads' posteriors; 1.0: the heads alone


def main():
    cache, post, loso = sys.argv[1:4]
    method = sys.argv[4] if len(sys.argv) > 4 else "mlp-noise"
    report = json.load(open(loso))
    classes = report["categories"]
    cidx = {c: i for i, c in enumerate(classes)}
    name = next(k for k in report["scores"] if k.endswith(" " + method))
    rows = [r for r in map(json.loads, open(post)) if r["method"] == method]
    feats = {}
    for variant, f in (("clean", "logits.npz"), ("noisy", "logits-noisy-snr10-seed1.npz")):
        z = np.load(f"{cache}/yamnet/{f}")
        feats[variant] = {k: clip_features(z[k]) for k in z.files}
    index = json.load(open(f"{cache}/corpus.json"))
    group_of = {d["name"]: d.get("group") or d["name"] for d in index["datasets"]}
    # Every labelled clip of a head class, for training the YAMNet heads.
    labelled = {(r["dataset"], r["rel_path"]): r["category"] for r in rows}
    by_fold = collections.defaultdict(list)
    for r in rows:
        by_fold[r["fold"]].append(r)
    out = collections.defaultdict(lambda: collections.defaultdict(list))
    # Per Category, pooled over folds (clean): test clips, right by the method, right fused 0.5.
    per_class = collections.defaultdict(lambda: [0, 0, 0])
    for fold, test in sorted(by_fold.items()):
        train = [k for k in labelled if group_of[k[0]] != fold]
        x, y = [], []
        for v in ("clean", "noisy"):
            for k in train:
                key = f"{k[0]}/{k[1]}"
                if key in feats[v]:
                    x.append(feats[v][key])
                    y.append(cidx[labelled[k]])
        predict = fit_linear(np.array(x), np.array(y), len(classes))
        for v in ("clean", "noisy"):
            t = [r for r in test if r[v] is not None]
            key = [f"{r['dataset']}/{r['rel_path']}" for r in t]
            py = predict(np.array([feats[v][k] for k in key]))
            ph = np.array([r[v] for r in t])
            truth = np.array([cidx[r["category"]] for r in t])
            for a in WEIGHTS:
                p = np.exp(a * np.log(ph + 1e-9) + (1 - a) * np.log(py + 1e-9))
                out[v][a].append(((p.argmax(1) == truth).sum()) / len(t))
            if v == "clean":
                fused = np.exp(0.5 * np.log(ph + 1e-9) + 0.5 * np.log(py + 1e-9)).argmax(1)
                for t_, h_, f_ in zip(truth, ph.argmax(1), fused):
                    e = per_class[classes[t_]]
                    e[0] += 1
                    e[1] += int(h_ == t_)
                    e[2] += int(f_ == t_)
            own = out[v][1.0][-1]
            ref = report["scores"][name][v][fold]["top1"]
            assert abs(own - ref) < 1e-6, f"{fold} {v}: recomputed {own:.4f}, report {ref:.4f}"
    print(f"recall per Category, clean, pooled over folds: test clips, {method} alone, fused 0.5")
    for c, (n, h, f) in sorted(per_class.items()):
        print(f"  {c:16s} {n:5d}  {h / n:.3f}  {f / n:.3f}")
    for v in ("clean", "noisy"):
        base = np.array(out[v][1.0])
        for a in WEIGHTS:
            s = np.array(out[v][a])
            d = s - base
            se = d.std(ddof=1) / math.sqrt(len(d))
            label = {0.0: "YAMNet head alone", 1.0: f"{method} alone"}.get(a, f"fused, {a} on {method}")
            print(f"{v:5s} {label:28s} {s.mean():.3f}  ({d.mean():+.3f} ± {se:.3f}; {int((d > 0).sum())} up, {int((d < 0).sum())} down of {len(d)})")


if __name__ == "__main__":
    main()
