"""Calibration and uncertainty of the classifier's probabilities.

``ece`` (expected calibration error), ``fit_temperature`` / ``apply_temperature``
(temperature scaling, Guo et al. 2017, fitted on the validation split) and
``bootstrap_intervals`` (seeded percentile intervals of AUC and balanced
accuracy: the test sets here are small). Scores themselves come from
skinlesion.scoring.
"""
import numpy as np

from skinlesion import scoring

EPSILON = 1e-7


def log_probabilities(probs):
    """Logits standing for probabilities: log(p), float64 [N, K] from probs [N, K].

    softmax(log p / T) is temperature scaling of the model's logits, since
    logits and log p differ by a per-row constant.
    """
    return np.log(np.clip(np.asarray(probs, np.float64), EPSILON, 1.0))


def softmax(logits):
    """Row-wise softmax of float [N, K] -> float [N, K]."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece(truth, probs, bins=15):
    """Expected calibration error of the top-class confidence.

    truth: int class indices [N]; probs: float [N, K]. Confidences (the
    largest probability) fall into ``bins`` equal-width bins of (0, 1];
    ECE is the image-weighted mean over bins of |accuracy - mean confidence|.
    Returns float in [0, 1] (0 for no images).
    """
    probs = np.asarray(probs, np.float64)
    truth = np.asarray(truth, np.int64)
    if not len(truth):
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(truth))


def nll(truth, probs):
    """Mean negative log-likelihood of the true classes: truth int [N], probs float [N, K] -> float."""
    probs = np.asarray(probs, np.float64)
    picked = probs[np.arange(len(truth)), np.asarray(truth, np.int64)]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def apply_temperature(probs, temperature):
    """Probabilities [N, K] rescaled by a softmax temperature (T > 1 softens, T < 1 sharpens)."""
    return softmax(log_probabilities(probs) / float(temperature))


def fit_temperature(truth, probs, bounds=(0.1, 10.0)):
    """The temperature minimising the validation NLL of apply_temperature(probs, T).

    truth: int [N]; probs: float [N, K]. A bounded 1-D search over log T
    (scipy). Returns float T (1.0 when there are no images).
    """
    from scipy.optimize import minimize_scalar
    if not len(truth):
        return 1.0
    logits = log_probabilities(probs)
    result = minimize_scalar(lambda log_t: nll(truth, softmax(logits / np.exp(log_t))),
                             bounds=tuple(np.log(bounds)), method="bounded")
    return float(np.exp(result.x))


def calibration_report(truth, probs, temperature):
    """{"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "images"} for probs [N, K]."""
    calibrated = apply_temperature(probs, temperature)
    return {"temperature": float(temperature), "ece_before": ece(truth, probs), "ece_after": ece(truth, calibrated),
            "nll_before": nll(truth, probs), "nll_after": nll(truth, calibrated), "images": int(len(truth))}


def _auc(positive, scores):
    """ROC AUC of scores [N] for bool positive [N], or None when one class is absent.

    The Mann-Whitney form (mid-ranks for ties), equal to sklearn's
    roc_auc_score and many times faster inside a bootstrap loop.
    """
    from scipy.stats import rankdata
    count = int(positive.sum())
    if count == 0 or count == len(positive):
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - count * (count + 1) / 2.0) / (count * (len(positive) - count)))


def bootstrap_auc(positive, scores, resamples=1000, level=0.95, seed=0, rng=None):
    """(AUC, [low, high] or None) of scores [N] for bool positive [N]: a percentile bootstrap interval.

    Images are resampled with replacement ``resamples`` times from ``rng``
    (default: a new numpy Generator seeded with ``seed``); resamples lacking
    positives or negatives are dropped. AUC is None when a class is absent,
    and then no resampling is done.
    """
    positive, scores = np.asarray(positive, bool), np.asarray(scores, np.float64)
    value = _auc(positive, scores)
    if value is None:
        return None, None
    rng = np.random.default_rng(seed) if rng is None else rng
    draws = []
    for _ in range(int(resamples)):
        pick = rng.integers(0, len(positive), len(positive))
        drawn = _auc(positive[pick], scores[pick])
        if drawn is not None:
            draws.append(drawn)
    return value, percentile_interval(draws, level)


def percentile_interval(values, level=0.95):
    """[low, high] percentiles holding ``level`` of the finite values (a bootstrap interval), or None if none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def bootstrap_intervals(truth, probs, class_names, resamples=1000, level=0.95, seed=0):
    """Percentile bootstrap intervals of each class's AUC, the mean AUC and the balanced accuracy.

    truth: int class indices [N]; probs: float [N, K]; class_names: K names.
    Images are resampled with replacement ``resamples`` times (seeded, so
    the same call gives the same intervals); a resample without positives
    or negatives of a class gives no AUC for that class. Returns {"level",
    "resamples", "seed", "balanced_accuracy": [low, high], "mean_auc":
    [low, high], "auc": {name: [low, high] or None}}.
    """
    truth = np.asarray(truth, np.int64)
    probs = np.asarray(probs, np.float64)
    rng = np.random.default_rng(seed)
    draws = {"balanced_accuracy": [], "mean_auc": [], **{name: [] for name in class_names}}
    for _ in range(int(resamples)):
        pick = rng.integers(0, len(truth), len(truth))
        t, p = truth[pick], probs[pick]
        draws["balanced_accuracy"].append(scoring.balanced_accuracy(t, p))
        aucs = []
        for column, name in enumerate(class_names):
            value = _auc(t == column, p[:, column])
            if value is not None:
                draws[name].append(value)
                aucs.append(value)
        if aucs:
            draws["mean_auc"].append(float(np.mean(aucs)))
    return {"level": level, "resamples": int(resamples), "seed": seed,
            "balanced_accuracy": percentile_interval(draws["balanced_accuracy"], level),
            "mean_auc": percentile_interval(draws["mean_auc"], level),
            "auc": {name: percentile_interval(draws[name], level) for name in class_names}}
