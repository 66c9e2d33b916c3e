"""A quick linear probe on the heads' folds: the same leave-one-source-out folds, classes and
class weighting as `sfxtag-train heads` (Categories with 15+ clips from 2+ source groups; a fold
per group with 15+ clips of them, its test clips those of a head class), with a logistic
regression instead of the MLP, so the inputs can be compared in seconds per fold:

- embedding: the aiSFX window embeddings, a clip's label the mean of its windows' posteriors;
- yamnet: YAMNet's clip logits (mean and max over its patches), one row per clip;
- fused a: the two clip posteriors' weighted geometric mean (a on the embedding's).

    python probe.py CACHE      (after logits.py; clean audio only)
"""
import collections
import csv
import json
import os
import sys
import time

import numpy as np
from common import clip_features, fit_linear

FUSION = (0.3, 0.5, 0.7)


def load(cache, root):
    ucs = {r["CatID"]: r["Category"] for r in csv.DictReader(open(f"{root}/data/ucs/ucs_v8.2.1.csv"))}
    index = json.load(open(f"{cache}/corpus.json"))
    z = np.load(f"{cache}/yamnet/logits.npz")
    clips, embs, base = [], [], 0
    for d in index["datasets"]:
        j = json.load(open(f"{cache}/embeddings/clean/{d['name']}.json"))
        width = j["dim"] + sum(n for _, n in j["aux"])
        raw = np.fromfile(f"{cache}/embeddings/clean/{d['name']}.f32", dtype="<f4").reshape(-1, width)
        embs.append(raw[:, : j["dim"]])
        for c in j["clips"]:
            key = f"{d['name']}/{c['rel_path']}"
            y = z[key] if key in z.files else np.zeros((1, 521), np.float32)
            clips.append(dict(
                group=d.get("group") or d["name"],
                cat=ucs.get(c["ucs_catid"]) if c["ucs_catid"] else None,
                rows=np.arange(base + c["first"], base + c["first"] + c["windows"]),
                yam=clip_features(y),
            ))
        base += raw.shape[0]
    return clips, np.concatenate(embs)


def main():
    cache = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    clips, emb = load(cache, root)
    count = collections.defaultdict(lambda: [0, set()])
    for c in clips:
        if c["cat"]:
            count[c["cat"]][0] += 1
            count[c["cat"]][1].add(c["group"])
    classes = sorted(k for k, (n, g) in count.items() if n >= 15 and len(g) >= 2)
    cidx = {k: i for i, k in enumerate(classes)}
    groups = sorted({c["group"] for c in clips})
    folds = [g for g in groups if sum(c["group"] == g and c["cat"] in cidx for c in clips) >= 15]
    print(f"{len(clips)} clips, {len(classes)} classes, {len(folds)} folds", flush=True)

    def fit_predict(train, test, rows_of):
        x, y, w = [], [], []
        for c in train:
            r = rows_of(c)
            x.append(r)
            y += [cidx[c["cat"]]] * len(r)
            w += [1.0 / len(r)] * len(r)
        predict = fit_linear(np.concatenate(x), np.array(y), len(classes), np.array(w))
        return np.array([predict(rows_of(c)).mean(0) for c in test])

    scores = collections.defaultdict(list)
    t0 = time.time()
    for g in folds:
        train = [c for c in clips if c["group"] != g and c["cat"] in cidx]
        test = [c for c in clips if c["group"] == g and c["cat"] in cidx]
        truth = np.array([cidx[c["cat"]] for c in test])
        pe = fit_predict(train, test, lambda c: emb[c["rows"]])
        py = fit_predict(train, test, lambda c: c["yam"][None])
        fold = {"embedding": pe, "yamnet": py}
        for a in FUSION:
            fold[f"fused {a}"] = np.exp(a * np.log(pe + 1e-9) + (1 - a) * np.log(py + 1e-9))
        line = []
        for k, p in fold.items():
            acc = float((p.argmax(1) == truth).mean())
            scores[k].append(acc)
            line.append(f"{k} {acc:.3f}")
        print(f"  {g}: " + ", ".join(line), flush=True)
    print(f"mean top-1 over {len(folds)} folds ({time.time() - t0:.0f} s):")
    base = np.array(scores["embedding"])
    for k, v in scores.items():
        v = np.array(v)
        d = v - base
        print(f"  {k:12s} {v.mean():.3f}  (vs embedding {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f})")


if __name__ == "__main__":
    main()
