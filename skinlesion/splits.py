"""Leakage-free dataset splits: seeded, grouped by lesion, stratified by class.

Pure functions on lists; no file access. Images of one lesion (one group)
always land in the same subset, so a model is never tested on a lesion it
was trained on. Within that constraint each class is apportioned to the
subsets in the requested fractions.

The assignment is a greedy apportionment: groups are visited largest first
(ties in a seeded random order) and each goes to the subset whose share of
the group's classes is furthest below its target, measured relative to the
target (so small subsets such as a 10% test set are not starved).
"""
import logging
from collections import Counter

import numpy as np

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")


class FoldSplit(tuple):
    """K-fold cross-validation as a split: test is fold ``fold`` of ``folds``, val carved from the rest.

    A tuple of the equivalent (train, val, test) fractions, so code that reads
    fractions (summaries, the ISIC 2016 val share, synthetic counts) works
    unchanged; assign_split gives the real assignment. The folds are one
    seeded, grouped, stratified partition whatever ``fold`` and ``val``, so
    the ``folds`` test subsets of one seed are disjoint and cover every item.
    val: share of all items for validation, taken (grouped, stratified) from
    the other folds with seed + fold.
    """

    def __new__(cls, fold, folds, val=0.1):
        if isinstance(folds, bool) or int(folds) != folds or folds < 2:
            raise ValueError(f"split=fold{fold}/{folds}: the fold count must be an integer >= 2")
        if isinstance(fold, bool) or int(fold) != fold or not 0 <= fold < folds:
            raise ValueError(f"split=fold{fold}/{folds}: the fold must be an integer from 0 to {int(folds) - 1}")
        rest = (folds - 1) / folds
        if not 0 <= val < rest:
            raise ValueError(f"split=fold{fold}/{folds},{val:g}: the val share must be >= 0 and below {rest:g} "
                             "(the share the other folds hold)")
        self = super().__new__(cls, (rest - val, float(val), 1.0 / folds))
        self.fold, self.folds, self.val = int(fold), int(folds), float(val)
        return self

    def __reduce__(self):
        return FoldSplit, (self.fold, self.folds, self.val)

    def __str__(self):
        return f"fold{self.fold}/{self.folds},{self.val:g}"

    __repr__ = __str__


def parse_split(text, flag="--split"):
    """The --split text -> (train, val, test) fractions, or a FoldSplit.

    "0.8,0.1,0.1": three fractions. "fold2/5": test is fold 2 of 5 (0-based),
    val 0.1 of all images from the other folds; "fold2/5,0.15" sets the val
    share (0 trains on all four other folds). Tuples and FoldSplits pass
    through. Raises ValueError naming ``flag``.
    """
    if not isinstance(text, str):
        return text if isinstance(text, FoldSplit) else tuple(text)
    where = f"{flag}{text}" if flag.endswith("=") else f"{flag} {text}"
    value = text.strip()
    if value.lower().startswith("fold"):
        head, _, val = value[4:].partition(",")
        fold, _, folds = head.partition("/")
        try:
            return FoldSplit(int(fold), int(folds), float(val) if val else 0.1)
        except ValueError as err:
            raise ValueError(f"{where}: expected foldK/N or foldK/N,VAL (e.g. fold0/5 or fold0/5,0.1); "
                             f"{err}") from None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise ValueError(f"{where}: expected three fractions such as 0.8,0.1,0.1, "
                         "or foldK/N for cross-validation (e.g. fold0/5)") from None


def describe_fractions(split):
    """A split for a JSON summary: [train, val, test] fractions, or the FoldSplit's text ("fold2/5,0.1")."""
    return str(split) if isinstance(split, FoldSplit) else [float(f) for f in split]


def validate_fractions(fractions, names=SUBSETS, field="split"):
    """Check split fractions and return them as a tuple of floats (a FoldSplit as it is).

    fractions: one non-negative number per name in ``names``, summing to 1
    (within 1e-6) with the first (train) one positive. Raises ValueError
    naming ``field`` otherwise.
    """
    if isinstance(fractions, FoldSplit) and tuple(names) == SUBSETS:
        return fractions
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field}={fractions!r}: expected {len(names)} numbers "
                         f"({'/'.join(names)} fractions), e.g. (0.8, 0.1, 0.1)") from err
    if len(values) != len(names):
        raise ValueError(f"{field}={fractions!r}: expected {len(names)} fractions "
                         f"({'/'.join(names)}), got {len(values)}")
    if any(v < 0 for v in values) or values[0] <= 0:
        raise ValueError(f"{field}={fractions!r}: fractions must be >= 0 and the "
                         f"{names[0]} fraction > 0")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"{field}={fractions!r}: fractions must sum to 1, got {sum(values):.6g}")
    return values


def assign_subsets(groups, labels=None, fractions=(0.8, 0.1, 0.1), seed=0, names=SUBSETS):
    """Assign every item to one subset, keeping groups together and classes balanced.

    groups: sequence [N] of hashable group keys (e.g. lesion ids); items with
        the same key always get the same subset.
    labels: optional sequence [N] of class keys (None allowed) to stratify by.
        A group's items may carry different labels; all count.
    fractions: one fraction per name, summing to 1.
    seed: int; the same inputs and seed give the same assignment, whatever
        the order of first appearance of the groups.

    Returns a list [N] of subset names.
    """
    fractions = validate_fractions(fractions, names)
    n_items = len(groups)
    if labels is None:
        labels = [None] * n_items
    if len(labels) != n_items:
        raise ValueError(f"labels has {len(labels)} entries but groups has {n_items}")
    if n_items == 0:
        return []

    # Sort keys by their text so the result does not depend on input order.
    group_keys = sorted(set(groups), key=lambda k: (str(type(k)), str(k)))
    group_index = {key: i for i, key in enumerate(group_keys)}
    label_keys = sorted(set(labels), key=lambda k: (k is not None, str(k)))
    label_index = {key: i for i, key in enumerate(label_keys)}

    counts = np.zeros([len(group_keys), len(label_keys)], np.float64)  # [G, L]
    item_group = np.array([group_index[g] for g in groups])
    for g, label in zip(item_group, labels):
        counts[g, label_index[label]] += 1

    share = np.asarray(fractions)  # [K]
    targets = share[:, None] * counts.sum(axis=0)[None, :]  # [K, L]
    target_sizes = share * n_items  # [K]
    current = np.zeros_like(targets)  # [K, L]
    open_subsets = share > 0

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(group_keys))
    sizes = counts.sum(axis=1)
    order = order[np.argsort(-sizes[order], kind="stable")]

    group_subset = np.zeros(len(group_keys), np.int64)
    for g in order:
        group_counts = counts[g]  # [L]
        relative_deficit = (targets - current) / np.maximum(targets, 1e-12)  # [K, L]
        score = (relative_deficit * group_counts[None, :]).sum(axis=1) / group_counts.sum()
        sizes_now = current.sum(axis=1)
        overall = (target_sizes - sizes_now) / np.maximum(target_sizes, 1e-12)
        jitter = rng.random(len(names))
        score = np.where(open_subsets, np.round(score, 9), -np.inf)
        # lexsort: last key is primary -> class deficit, then overall deficit, then chance.
        best = np.lexsort((jitter, overall, score))[-1]
        group_subset[g] = best
        current[best] += group_counts

    return [names[group_subset[g]] for g in item_group]


def assign_split(groups, labels=None, split=(0.8, 0.1, 0.1), seed=0):
    """assign_subsets for a (train, val, test) split or a FoldSplit: a list [N] of "train" / "val" / "test".

    FoldSplit: the items are dealt into ``folds`` equal grouped, stratified
    folds with ``seed`` (the same partition for every fold number); fold
    ``fold`` is the test subset and the val share is carved from the others
    (grouped, stratified, seed + fold).
    """
    if not isinstance(split, FoldSplit):
        return assign_subsets(groups, labels, split, seed)
    names = tuple(f"fold{k}" for k in range(split.folds))
    folds = assign_subsets(groups, labels, [1.0 / split.folds] * split.folds, seed, names)
    assigned = ["test" if name == names[split.fold] else "train" for name in folds]
    rest = [i for i, name in enumerate(assigned) if name == "train"]
    if split.val > 0 and rest:
        labels = [None] * len(groups) if labels is None else labels
        _, val = carve_validation([groups[i] for i in rest], [labels[i] for i in rest],
                                  split.val / (split[0] + split.val), seed + split.fold)
        for position in val:
            assigned[rest[position]] = "val"
    return assigned


def grouped_split(groups, labels=None, fractions=(0.8, 0.1, 0.1), seed=0, names=SUBSETS):
    """Split item indices into subsets grouped by ``groups``, stratified by ``labels``.

    Same arguments as assign_subsets. Returns {name: int64 array of sorted
    item indices}; the arrays partition range(N).
    """
    assigned = assign_subsets(groups, labels, fractions, seed, names)
    assigned = np.asarray(assigned, dtype=object)
    return {name: np.flatnonzero(assigned == name).astype(np.int64) for name in names}


def carve_validation(groups, labels=None, val_fraction=0.1, seed=0):
    """Split an official training set into train and val, grouped and stratified.

    Used where a challenge ships only Training and Test folders (ISIC 2016).
    Returns (train_indices, val_indices), int64 arrays partitioning range(N).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r}: must be in [0, 1)")
    split = grouped_split(groups, labels, (1.0 - val_fraction, val_fraction), seed,
                          names=("train", "val"))
    return split["train"], split["val"]


def describe_split(assigned, labels=None):
    """Count items per subset and per (subset, label); for logs and summaries.

    assigned: list [N] of subset names; labels: optional list [N].
    Returns {subset: {"images": n, "labels": {label: n}}}.
    """
    out = {}
    labels = labels if labels is not None else [None] * len(assigned)
    for subset in sorted(set(assigned)):
        in_subset = [label for name, label in zip(assigned, labels) if name == subset]
        out[subset] = {"images": len(in_subset),
                       "labels": dict(Counter("unknown" if l is None else str(l) for l in in_subset))}
    return out
