"""What probe.py and fuse.py share: YAMNet's clip features and the class-weighted linear head."""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

# The heads' class sampling: a class weighs (its clips)^0.3 in all.
CLASS_POWER = 0.3


def clip_features(logits):
    """A clip's YAMNet features: the mean and the max of its patches' logits."""
    return np.concatenate([logits.mean(0), logits.max(0)])


def fit_linear(x, y, n_classes, row_weight=None):
    """A logistic regression on z-scored rows, classes weighted as the heads' sampler weighs
    them (`row_weight`: a row's share of its clip, 1 by default). Returns a function giving
    probabilities for every one of `n_classes` (0 for a class absent from training)."""
    row_weight = np.ones(len(y)) if row_weight is None else row_weight
    total = np.bincount(y, weights=row_weight, minlength=n_classes)
    w = row_weight * total[y] ** CLASS_POWER / total[y]
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=0.05, max_iter=150).fit(scaler.transform(x), y, sample_weight=w / w.mean())

    def predict(rows):
        p = np.zeros((len(rows), n_classes))
        p[:, model.classes_] = model.predict_proba(scaler.transform(rows))
        return p

    return predict
