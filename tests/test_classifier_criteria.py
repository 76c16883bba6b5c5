"""The classifier's criteria head: masked losses, learning, scoring, Grad-CAM.

Tiny images, the "tiny" backbone, one model trained once per module.
"""
import csv
import json
import os

import numpy as np
import pytest

from skinlesion.classifier import ClassifierConfig
from skinlesion.classifier_criteria import (MaskedBinaryCrossEntropy, MaskedSparseCrossEntropy, criteria_names,
                                            item_targets, outputs_of, score_criteria)
from skinlesion.classifier_data import ClassifierItem, CropCache

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SIZE = 64
TINY = {"CLASS_SCHEME": "binary", "BACKBONE": "tiny", "IMAGE_SIZE": SIZE, "BATCH_SIZE": 16,
        "LEARNING_RATE": 3e-3, "TTA": False, "CRITERIA": "streaks,blue_whitish_veil", "EPOCHS": 8}


def test_masked_losses_leave_unknown_targets_out():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], np.float32)
    ce = MaskedSparseCrossEntropy()(np.array([0, 1, -1]), probs)
    assert float(ce) == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-5)   # the mean of the known two
    p = np.array([[0.9], [0.3], [0.6]], np.float32)
    bce = MaskedBinaryCrossEntropy()(np.array([1, -1, 0]), p)
    assert float(bce) == pytest.approx(-(np.log(0.9) + np.log(0.4)) / 2, rel=1e-4)
    assert float(MaskedBinaryCrossEntropy()(np.array([-1, -1, -1]), p)) == 0.0      # nothing known: no loss


def test_criteria_field_names_sets_and_criteria():
    assert criteria_names("") == ()
    assert criteria_names("ph2")[:2] == ("asymmetry", "pigment_network")
    assert criteria_names("streaks, task2")[:2] == ("streaks", "task2_globules")
    from mrcnn.config import ConfigError
    with pytest.raises(ConfigError, match="CRITERIA"):
        ClassifierConfig(CRITERIA="stripes")


def _image(seed):
    """A 64 px skin-coloured square with dark vertical streaks and / or a blue patch at a random place."""
    rng = np.random.default_rng(seed)
    image = (np.full((SIZE, SIZE, 3), (170, 130, 110)) + rng.normal(0, 8, (SIZE, SIZE, 3))).clip(0, 255)
    streaks, veil = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    if streaks:
        image[:, int(rng.integers(0, 4))::6] = (60, 40, 30)
    box = None
    if veil:
        y, x = rng.integers(0, SIZE - 24, 2)
        image[y:y + 24, x:x + 24] = (110, 130, 190)
        box = (int(y), int(x))
    return image.astype(np.uint8), {"streaks": streaks, "blue_whitish_veil": veil}, box


def _items(seeds, drop_veil_every=0):
    """Items labelled by streaks (the diagnosis) with both criteria; the veil unknown for every n-th."""
    items = []
    for seed in seeds:
        image, criteria, _ = _image(seed)
        if drop_veil_every and seed % drop_veil_every == 0:
            criteria = {"streaks": criteria["streaks"]}
        items.append(ClassifierItem(f"im{seed}", (lambda im=image: im), int(criteria["streaks"]), criteria=criteria))
    return items


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run trained on 160 images, a third of them without the veil label."""
    from skinlesion.classifier_train import load_classifier_run, train_classifier
    logs = tmp_path_factory.mktemp("criteria_logs")
    run_dir = train_classifier(ClassifierConfig(**TINY), _items(range(160), drop_veil_every=3),
                               _items(range(160, 190)), str(logs))
    return load_classifier_run(run_dir), logs


def test_the_head_learns_criteria_even_when_some_are_unknown(trained, tmp_path):
    from skinlesion.classifier_train import evaluate_classifier
    run, logs = trained
    assert [o.name for o in run.outputs] == ["streaks", "blue_whitish_veil"]
    items = _items(range(500, 560))
    metrics = evaluate_classifier(run, items, CropCache(str(logs / "crop_cache"), None, 0.25, SIZE),
                                  str(tmp_path / "eval"), resamples=50)
    for name in ("streaks", "blue_whitish_veil"):
        entry = metrics["criteria"][name]
        assert entry["images"] == 60 and 10 < entry["positives"] < 50
        assert entry["auc"] > 0.9, (name, entry)
    rows = list(csv.reader(open(tmp_path / "eval" / "criteria.csv")))
    assert rows[0] == ["image", "streaks", "blue_whitish_veil", "seven_point_score"] and len(rows) == 61
    saved = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert saved["criteria"]["streaks"]["interval"][0] <= saved["criteria"]["streaks"]["auc"]


def test_unknown_criteria_are_not_scored():
    outputs = outputs_of(ClassifierConfig(**TINY))
    items = [ClassifierItem("a", None, 0, criteria={"streaks": True}), ClassifierItem("b", None, 0, criteria={}),
             ClassifierItem("c", None, 0, criteria={"streaks": False, "blue_whitish_veil": True})]
    targets = item_targets(items, outputs)
    np.testing.assert_array_equal(targets, [[1, -1], [-1, -1], [0, 1]])
    scores = score_criteria(targets, {"streaks": np.array([[0.9], [0.5], [0.2]]),
                                      "blue_whitish_veil": np.array([[0.1], [0.1], [0.7]])}, outputs, resamples=10)
    assert scores["streaks"] == {"images": 2, "positives": 1, "auc": 1.0, "interval": [1.0, 1.0]}
    assert scores["blue_whitish_veil"]["auc"] is None and scores["blue_whitish_veil"]["images"] == 1


def test_gradcam_of_the_veil_looks_at_the_blue_patch(trained):
    from skinlesion.classifier_criteria import key
    from skinlesion.report_criteria import gradcam
    run, _ = trained
    veil = next(o for o in run.outputs if o.name == "blue_whitish_veil")
    inside, outside = [], []
    for seed in range(600, 640):
        image, criteria, box = _image(seed)
        if box is None:
            continue
        cam = gradcam(run.model, run.config, image, np.ones((SIZE, SIZE), np.float32), key(veil), 0)
        assert cam.shape == (SIZE, SIZE) and 0 <= cam.min() and cam.max() <= 1
        region = np.zeros((SIZE, SIZE), bool)
        region[box[0]:box[0] + 24, box[1]:box[1] + 24] = True
        inside.append(cam[region].mean())
        outside.append(cam[~region].mean())
    assert len(inside) > 10 and np.mean(inside) > 1.5 * np.mean(outside)


def test_the_head_learns_synthetic_structures(tmp_path):
    """Synthetic dermoscopy with drawn structures, crops around the true lesion, odds 0.5 each.

    The tiny backbone at 64 px learns the pigment network's type, the veil and
    regression in ten epochs (held-out AUC about 0.8-0.87, 1.0 and 0.8-0.85
    over seeds, measured). Dots/globules and streaks are a few pixels wide at
    this size; the same budget leaves them near 0.6, so they are left to
    bench/criteria_ph2.py's larger model rather than asserted here.
    """
    from skinlesion.classifier_data import synthetic_items
    from skinlesion.classifier_train import evaluate_classifier, load_classifier_run, train_classifier
    odds = dict(network=1.0, atypical_network=0.5, typical_globules=0.0, atypical_globules=0.0, streaks=0.0,
                veil=0.5, regression=0.5, milia=0.0, negative_network=0.0)
    names = ("common_nevus", "melanoma")

    def items(count, seed):
        return synthetic_items(count, names, (128, 128), seed=seed, artefacts=False, structures=True,
                               probabilities=odds, crop_size=SIZE)
    config = ClassifierConfig(**{**TINY, "CRITERIA": "pigment_network,blue_whitish_veil,regression_areas",
                                 "EPOCHS": 10})
    run = load_classifier_run(train_classifier(config, items(400, 1), items(40, 2), str(tmp_path / "logs")))
    metrics = evaluate_classifier(run, items(120, 3), CropCache(str(tmp_path / "cache"), None, 0.25, SIZE),
                                  str(tmp_path / "eval"), resamples=20)
    aucs = {name: entry["auc"] for name, entry in metrics["criteria"].items()}
    assert aucs["blue_whitish_veil"] > 0.9 and aucs["pigment_network"] > 0.7 and aucs["regression_areas"] > 0.7, aucs
