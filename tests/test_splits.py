"""Seeded, grouped, stratified splits (skinlesion.splits) as pure functions."""
from collections import Counter

import numpy as np
import pytest

from skinlesion.splits import (FoldSplit, assign_split, assign_subsets, carve_validation, describe_split,
                               grouped_split, parse_split, validate_fractions)


def ham_like(n_lesions=600, seed=0):
    """Groups and labels like HAM10000: 1-4 images per lesion, imbalanced classes."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for lesion in range(n_lesions):
        label = rng.choice(["nv", "mel", "bkl", "bcc", "df"], p=[0.65, 0.12, 0.12, 0.06, 0.05])
        for _ in range(rng.integers(1, 5)):
            groups.append(f"HAM_{lesion:05d}")
            labels.append(str(label))
    return groups, labels


def test_partition_every_item_exactly_once():
    groups, labels = ham_like()
    split = grouped_split(groups, labels, (0.8, 0.1, 0.1), seed=1)
    everything = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(everything.tolist()) == list(range(len(groups)))


def test_same_seed_same_split_other_seed_other_split():
    groups, labels = ham_like()
    first = assign_subsets(groups, labels, seed=5)
    assert assign_subsets(groups, labels, seed=5) == first
    assert assign_subsets(groups, labels, seed=6) != first


def test_result_does_not_depend_on_input_order():
    groups, labels = ham_like(200)
    order = np.random.default_rng(0).permutation(len(groups))
    shuffled = assign_subsets([groups[i] for i in order], [labels[i] for i in order], seed=2)
    plain = assign_subsets(groups, labels, seed=2)
    assert [plain[i] for i in order] == shuffled


def test_no_lesion_in_two_subsets():
    groups, labels = ham_like()
    assigned = assign_subsets(groups, labels, seed=3)
    subsets_of = {}
    for group, subset in zip(groups, assigned):
        subsets_of.setdefault(group, set()).add(subset)
    assert all(len(s) == 1 for s in subsets_of.values())


def test_fractions_and_stratification_roughly_hold():
    groups, labels = ham_like(1500)
    assigned = assign_subsets(groups, labels, (0.7, 0.15, 0.15), seed=4)
    sizes = Counter(assigned)
    n = len(groups)
    assert abs(sizes["train"] / n - 0.7) < 0.02
    assert abs(sizes["val"] / n - 0.15) < 0.02
    total = Counter(labels)
    for subset, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        per_class = Counter(l for l, s in zip(labels, assigned) if s == subset)
        for label, count in total.items():
            # Each class keeps its proportion within a few images of the target.
            assert abs(per_class[label] - share * count) <= max(4, 0.1 * share * count), (subset, label)


def test_hand_worked_small_case_keeps_val_and_test_non_empty():
    split = grouped_split(["a", "b", "c", "d", "e"], None, (0.8, 0.1, 0.1), seed=0)
    assert sum(len(v) for v in split.values()) == 5
    assert len(split["val"]) == 1 and len(split["test"]) == 1 and len(split["train"]) == 3


def test_exact_apportionment_when_targets_are_whole():
    labels = ["cn"] * 80 + ["an"] * 80 + ["mel"] * 40  # PH2's class counts
    assigned = assign_subsets([str(i) for i in range(200)], labels, seed=0)
    assert Counter(l for l, s in zip(labels, assigned) if s == "test") == {"cn": 8, "an": 8, "mel": 4}
    assert describe_split(assigned, labels)["val"]["images"] == 20


def test_zero_fraction_subset_stays_empty():
    split = grouped_split([str(i) for i in range(50)], None, (0.9, 0.1, 0.0), seed=0)
    assert len(split["test"]) == 0 and len(split["val"]) == 5


def test_carve_validation_is_grouped():
    groups = ["L1", "L1", "L2", "L3", "L3", "L3"] + [f"S{i}" for i in range(30)]
    train, val = carve_validation(groups, None, 0.2, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(groups)))
    assert not ({groups[i] for i in train} & {groups[i] for i in val})
    assert 4 <= len(val) <= 10


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.8, 0.3, 0.1), (0.0, 0.5, 0.5), (0.9, -0.1, 0.2), "abc"])
def test_bad_fractions_name_the_field(bad):
    with pytest.raises(ValueError, match="split"):
        validate_fractions(bad)


# --------------------------------------------------------------------------- k-fold cross-validation

def test_folds_partition_the_items_into_disjoint_test_sets_of_whole_lesions():
    groups, labels = ham_like(300)
    tests = []
    for fold in range(5):
        assigned = assign_split(groups, labels, parse_split(f"fold{fold}/5"), seed=2)
        by_lesion = {}
        for group, name in zip(groups, assigned):
            by_lesion.setdefault(group, set()).add(name)
        assert all(len(names) == 1 for names in by_lesion.values())
        counts = Counter(assigned)
        assert abs(counts["test"] / len(groups) - 0.2) < 0.02
        assert abs(counts["val"] / len(groups) - 0.1) < 0.02
        tests.append({i for i, name in enumerate(assigned) if name == "test"})
        # Each fold's test subset carries the classes in about their overall shares.
        test_labels = Counter(labels[i] for i in tests[-1])
        assert abs(test_labels["mel"] / len(tests[-1]) - Counter(labels)["mel"] / len(labels)) < 0.04
    assert sum(len(t) for t in tests) == len(groups)
    assert set().union(*tests) == set(range(len(groups)))


def test_fold_partition_ignores_the_val_share_and_changes_with_the_seed():
    groups, labels = ham_like(200)
    test_of = {}
    for text in ("fold1/4", "fold1/4,0", "fold1/4,0.2"):
        assigned = assign_split(groups, labels, parse_split(text), seed=0)
        test_of[text] = [i for i, name in enumerate(assigned) if name == "test"]
        assert ("val" in assigned) == (not text.endswith(",0"))
    assert test_of["fold1/4"] == test_of["fold1/4,0"] == test_of["fold1/4,0.2"]
    other = assign_split(groups, labels, parse_split("fold1/4"), seed=1)
    assert [i for i, name in enumerate(other) if name == "test"] != test_of["fold1/4"]


def test_fold_split_reads_as_fractions_and_as_text():
    split = parse_split("fold2/5,0.15")
    assert isinstance(split, FoldSplit) and (split.fold, split.folds, split.val) == (2, 5, 0.15)
    assert np.allclose(split, (0.65, 0.15, 0.2)) and str(split) == "fold2/5,0.15"
    assert validate_fractions(split) is split and parse_split(split) is split
    assert parse_split("0.7,0.1,0.2") == (0.7, 0.1, 0.2)


@pytest.mark.parametrize("bad", ["fold5/5", "fold0/1", "foldx/5", "fold0/5,0.8", "fold0/5,-0.1", "0.8;0.2"])
def test_bad_fold_text_names_the_flag(bad):
    with pytest.raises(ValueError, match=r"--split"):
        parse_split(bad)
