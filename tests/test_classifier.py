"""The second-stage classifier: crops, crop cache, calibration, learning, metrics, CLI.

Tiny images (32-64 px), the "tiny" backbone and synthetic data, so the file
runs in well under a minute on two cores.
"""
import csv
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

import lesions
from skinlesion.classifier import (ClassifierConfig, build_classifier, lesion_crop, mask_box, model_inputs,
                                   square_window)
from skinlesion.classifier_data import CropCache, augment_crop, class_weights, synthetic_items
from skinlesion.classifier_metrics import (apply_temperature, bootstrap_intervals, calibration_report, ece,
                                           fit_temperature)
from skinlesion.classifier_train import evaluate_classifier, load_classifier_run, train_classifier

# Keras' TensorFlow backend converts tensors with np.array(x, copy=False), which TensorFlow's
# tensors answer with this warning under NumPy 2 (keras/src/backend/tensorflow/core.py).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TWO_CLASSES = ("common_nevus", "melanoma")  # visually distinct: uniform brown vs variegated, notched
TINY_CLS = {"CLASS_SCHEME": "binary", "BACKBONE": "tiny", "IMAGE_SIZE": 32, "BATCH_SIZE": 16,
            "LEARNING_RATE": 3e-3, "TTA": False}


# --------------------------------------------------------------------- crops
def test_crop_is_the_mask_box_grown_by_the_margin_and_squared():
    mask = np.zeros((100, 120), bool)
    mask[40:60, 50:90] = True                        # 20 x 40 box
    assert mask_box(mask) == (40, 50, 60, 90)
    window = square_window(mask_box(mask), mask.shape, margin=0.25)
    y1, x1, y2, x2 = window
    assert y2 - y1 == x2 - x1 == 60                  # longer side 40 x (1 + 2 x 0.25)
    assert (y1 + y2) / 2 == 50 and (x1 + x2) / 2 == 70  # centred on the box
    image = np.zeros((100, 120, 3), np.uint8)
    image[mask] = 200
    crop, crop_mask, got_window, kind = lesion_crop(image, mask, 0.25, 30)
    assert crop.shape == (30, 30, 3) and crop.dtype == np.uint8 and crop_mask.shape == (30, 30)
    assert got_window == window and kind == "lesion"
    # The box fills 40/60 of the width and 20/60 of the height, centred.
    assert crop_mask[15, 5:25].all() and not crop_mask[15, :4].any() and not crop_mask[:9, 15].any()


def test_crop_stays_inside_the_image_or_pads_when_larger():
    mask = np.zeros((50, 80), bool)
    mask[0:10, 70:80] = True                         # in the top-right corner
    y1, x1, y2, x2 = square_window(mask_box(mask), mask.shape, 0.5)
    assert (y1, x2) == (0, 80) and y2 - y1 == x2 - x1 == 20   # shifted in, not padded
    mask[:] = False
    mask[5:45, 10:70] = True                         # 60 wide: the square (90) exceeds the height (50)
    y1, x1, y2, x2 = square_window(mask_box(mask), mask.shape, 0.25)
    assert y2 - y1 == 90 and y1 <= 0 and y2 >= 50    # covers the whole height, padded
    crop, crop_mask, _, _ = lesion_crop(np.full((50, 80, 3), 255, np.uint8), mask, 0.25, 45)
    assert crop.shape == (45, 45, 3) and crop[0, 22].max() == 0   # zero padding above the image


def test_without_a_mask_the_crop_is_the_centred_square():
    image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    crop, crop_mask, window, kind = lesion_crop(image, None, 0.25, 40)
    assert kind == "centre" and window == (0, 10, 40, 50) and crop_mask.min() == 1
    np.testing.assert_array_equal(crop, image[:, 10:50])
    assert lesion_crop(image, np.zeros((40, 60), bool), 0.25, 40)[3] == "centre"


def test_augmentation_keeps_crop_and_mask_aligned():
    crop = np.zeros((8, 8, 3), np.uint8)
    crop[1, 2] = 255
    mask = crop[..., 0].astype(np.float32) / 255
    for seed in range(8):
        out, out_mask = augment_crop(crop, mask, np.random.default_rng(seed), jitter=0.0)
        np.testing.assert_array_equal(out[..., 0] > 0, out_mask > 0)


def test_class_weights_balance_the_loss():
    weights = class_weights([0, 0, 0, 1], 3)
    np.testing.assert_allclose(weights, [2 / 3, 2.0, 0.0])


def test_balanced_sampling_draws_classes_equally(tmp_path):
    from skinlesion.classifier_data import ClassifierItem, CropSequence
    items = [ClassifierItem(f"im{i}", None, int(i >= 90)) for i in range(100)]   # 90 vs 10
    config = ClassifierConfig(**TINY_CLS, IMBALANCE="balanced_sampling", STEPS_PER_EPOCH=50)
    sequence = CropSequence(config, None, items, 2)
    share = sequence.labels[sequence.order].mean()
    assert 0.4 < share < 0.6
    weighted = CropSequence(ClassifierConfig(**TINY_CLS), None, items, 2)
    np.testing.assert_allclose(weighted.weights, [100 / 180, 100 / 20])
    assert len(weighted) == 7 and sorted(weighted.order[:100]) == list(range(100))


def test_label_only_layouts_load_through_skinlesion_labelled(tmp_path):
    """A folder of images + labels.csv without masks/ loads for the classifier, in a classifier-only scheme."""
    from PIL import Image
    from skinlesion.classifier_data import load_items
    from skinlesion.synthetic import generate
    (tmp_path / "images").mkdir()
    rows = ["image,label"]
    for i, diagnosis in enumerate(["melanoma", "nevus", "melanoma", "nevus", "nevus", "melanoma"]):
        Image.fromarray(generate(i, (40, 48), diagnosis=diagnosis)[0]).save(tmp_path / "images" / f"im{i}.jpg")
        rows.append(f"im{i}.jpg,{diagnosis}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    items, summary = load_items(str(tmp_path), "all", "melanoma")
    assert summary["layout"] == "folder_labels" and summary["images"] == 6
    labels = {i.image_id: i.label for i in items}
    assert labels == {"im0": 1, "im1": 0, "im2": 1, "im3": 0, "im4": 0, "im5": 1}  # melanoma is index 1
    assert items[0].load().shape == (40, 48, 3)


# --------------------------------------------------------------------- model
@pytest.mark.parametrize("mode", ["none", "channel", "attention"])
def test_model_takes_the_mask_as_configured(mode):
    config = ClassifierConfig(**TINY_CLS, MASK_MODE=mode)
    model = build_classifier(config, 3)
    masks = np.zeros((2, 32, 32))
    masks[1, 8:24, 8:24] = 1
    probs = model(model_inputs(config, np.full((2, 32, 32, 3), 128, np.uint8), masks)).numpy()
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert len(model.inputs) == (1 if mode == "none" else 2)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="MASK_MODE"):
        ClassifierConfig(MASK_MODE="both")
    with pytest.raises(ValueError, match="WEIGHTS"):
        ClassifierConfig(WEIGHTS="/no/such/file.h5")
    saved = json.loads(ClassifierConfig(BACKBONE="resnet50").to_json())
    assert ClassifierConfig.from_dict(saved).BACKBONE == "resnet50"


def test_imagenet_offline_fails_at_once_naming_the_url(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    config = ClassifierConfig(BACKBONE="efficientnetv2b0", WEIGHTS="imagenet", IMAGE_SIZE=64)
    with pytest.raises(RuntimeError, match=r"storage\.googleapis\.com.*efficientnetv2-b0_notop\.h5.*--weights"):
        build_classifier(config, 2, cache_dir=tmp_path)


# --------------------------------------------------------------- calibration
def overconfident(n=400, seed=0):
    """Truth [N] and probabilities [N, 3] right 70 % of the time but always 97 % sure."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    guess = np.where(rng.random(n) < 0.7, truth, (truth + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.015)
    probs[np.arange(n), guess] = 0.97
    return truth, probs


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model():
    truth, probs = overconfident(seed=0)
    assert ece(truth, probs) == pytest.approx(0.27, abs=0.05)
    temperature = fit_temperature(truth, probs)
    assert temperature > 1.5                           # softens
    held_out_truth, held_out = overconfident(seed=1)   # fitted on one split, checked on another
    report = calibration_report(held_out_truth, held_out, temperature)
    assert report["ece_after"] < report["ece_before"] / 3 and report["nll_after"] < report["nll_before"]
    np.testing.assert_allclose(apply_temperature(probs, temperature).sum(axis=1), 1)
    np.testing.assert_array_equal(apply_temperature(probs, temperature).argmax(1), probs.argmax(1))


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 80)
    probs = np.eye(2)[truth] * 0.3 + rng.random((80, 2))
    probs /= probs.sum(axis=1, keepdims=True)
    first = bootstrap_intervals(truth, probs, ["a", "b"], resamples=200, seed=5)
    assert first == bootstrap_intervals(truth, probs, ["a", "b"], resamples=200, seed=5)
    from sklearn.metrics import roc_auc_score
    low, high = first["auc"]["b"]
    assert low < roc_auc_score(truth == 1, probs[:, 1]) < high < 1
    low, high = first["balanced_accuracy"]
    assert 0 <= low < high <= 1
    from skinlesion.classifier_metrics import _auc
    tied = np.round(probs[:, 1], 1)                  # ties score as sklearn scores them
    assert _auc(truth == 1, tied) == pytest.approx(roc_auc_score(truth == 1, tied))


# ----------------------------------------------------------------- training
class CountingSegmenter:
    """Stands for a Mask R-CNN run: a disc in the image centre, counting its calls."""
    key = "counting-segmenter|1"

    def __init__(self):
        self.calls = 0

    def lesion_mask(self, image):
        self.calls += 1
        yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
        return (yy - image.shape[0] / 2) ** 2 + (xx - image.shape[1] / 2) ** 2 < (image.shape[0] / 3) ** 2


def test_crop_cache_is_reused_by_later_epochs_and_runs(tmp_path):
    segmenter = CountingSegmenter()
    train_items = synthetic_items(12, TWO_CLASSES, (40, 40), seed=1)
    val_items = synthetic_items(4, TWO_CLASSES, (40, 40), seed=2)
    config = ClassifierConfig(**TINY_CLS, EPOCHS=2, MASK_MODE="attention")
    run = train_classifier(config, train_items, val_items, tmp_path / "logs", segmenter, tmp_path / "cache")
    assert segmenter.calls == 16                      # once per image, not per epoch
    rows = list(csv.DictReader(open(os.path.join(run, "losses.csv"))))
    assert len(rows) == 2
    again = CropCache(tmp_path / "cache", segmenter, config.CROP_MARGIN, config.IMAGE_SIZE)
    again.fill(train_items + val_items)
    assert segmenter.calls == 16 and again.reused == 16   # a later run reads the same crops
    other = CountingSegmenter()
    other.key = "counting-segmenter|2"                # another checkpoint: other crops
    CropCache(tmp_path / "cache", other, config.CROP_MARGIN, config.IMAGE_SIZE).fill(train_items[:2])
    assert other.calls == 2
    assert json.load(open(os.path.join(run, "config.json")))["SEGMENTER"] == "counting-segmenter|1"


def test_minutes_budget_stops_training(tmp_path):
    config = ClassifierConfig(**TINY_CLS, EPOCHS=50, MINUTES=1e-6)
    run = train_classifier(config, synthetic_items(8, TWO_CLASSES, (32, 32)), [], tmp_path, None, tmp_path / "c")
    calibration = json.load(open(os.path.join(run, "calibration.json")))
    assert calibration["epochs"] == 1 and calibration["temperature"] == 1.0 and "no validation" in calibration["note"]


def test_classifier_learns_synthetic_classes(tmp_path):
    config = ClassifierConfig(**TINY_CLS, EPOCHS=5)
    cache_root = tmp_path / "cache"
    run_dir = train_classifier(config, synthetic_items(160, TWO_CLASSES, (48, 48), seed=1),
                               synthetic_items(60, TWO_CLASSES, (48, 48), seed=2), tmp_path, None, cache_root)
    assert os.path.basename(run_dir).startswith("classifier")
    for name in ("config.json", "losses.csv", "calibration.json", "classifier_best.weights.h5",
                 "classifier_last.weights.h5"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    calibration = json.load(open(os.path.join(run_dir, "calibration.json")))
    assert calibration["temperature"] > 0 and calibration["ece_after"] <= calibration["ece_before"] + 1e-9
    assert calibration["crop"].startswith("centre")
    run = load_classifier_run(run_dir)
    cache = CropCache(cache_root, None, config.CROP_MARGIN, config.IMAGE_SIZE)
    metrics = evaluate_classifier(run, synthetic_items(60, TWO_CLASSES, (48, 48), seed=3), cache, tmp_path / "eval",
                                  resamples=100)
    assert metrics["classification"]["balanced_accuracy"] > 0.8      # chance is 0.5
    assert metrics["intervals"]["balanced_accuracy"][0] > 0.6
    header = next(csv.reader(open(tmp_path / "eval" / "probabilities.csv")))
    assert header == ["image", "benign", "malignant"]


# ----------------------------------------------------------------------- CLI
TINY_SEG = {"IMAGE_MAX_DIM": 64, "IMAGE_MIN_DIM": 64, "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
            "TOP_DOWN_PYRAMID_SIZE": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64, "POST_NMS_ROIS_INFERENCE": 32,
            "PRE_NMS_LIMIT": 200, "MASK_HEAD_CHANNELS": 32}
CLI_CLS = ["--config", "BACKBONE='tiny'", "--config", "IMAGE_SIZE=32", "--config", "EPOCHS=1",
           "--config", "BATCH_SIZE=4", "--quiet"]


@pytest.fixture(scope="module")
def segmenter_run(tmp_path_factory):
    """A Mask R-CNN run folder with random weights (config.json + one checkpoint): no training."""
    from mrcnn.model import MaskRCNN
    from skinlesion.config import LesionConfig
    logs = tmp_path_factory.mktemp("seglogs")
    config = LesionConfig(classes="lesion", GPU_COUNT=1, IMAGES_PER_GPU=1, **TINY_SEG)
    model = MaskRCNN("inference", config, str(logs))
    model.set_log_dir()
    os.makedirs(model.log_dir)
    from mrcnn.callbacks import variables_to_numpy_quietly
    with variables_to_numpy_quietly():
        model.keras_model.save_weights(model.checkpoint_path.format(epoch=1))
    model.save_config()
    return model.log_dir


def test_cli_train_evaluate_predict(segmenter_run, tmp_path, monkeypatch):
    from PIL import Image
    from skinlesion import classifier_data
    from skinlesion.synthetic import generate
    checkpoint = os.path.join(segmenter_run, "mask_rcnn_lesion_0001.weights.h5")
    # Crops for train / evaluate from the counting stand-in (tracing a Mask R-CNN's detect costs
    # seconds per load); predict below runs the real run.
    loaded = []

    def load(run):
        loaded.append(run)
        segmenter = CountingSegmenter()
        segmenter.checkpoint = checkpoint
        return segmenter
    monkeypatch.setattr(classifier_data.Segmenter, "load", staticmethod(load))
    logs = tmp_path / "logs"
    common = ["--dataset", "synthetic:6", "--classes", "binary", "--logs", str(logs)]
    # With the criteria head: the synthetic set records no criteria, so their losses are all masked,
    # and predict must still write them (learning is tested in test_classifier_criteria.py).
    assert lesions.main(["--mode", "train", "--model", "classifier", "--segmenter", segmenter_run,
                         *common, *CLI_CLS, "--config", "CRITERIA='ph2'"]) == 0
    runs = [d for d in os.listdir(logs) if d.startswith("classifier")]
    assert len(runs) == 1 and loaded == [segmenter_run]
    assert json.load(open(logs / runs[0] / "config.json"))["SEGMENTER"] == checkpoint

    out = tmp_path / "eval"
    assert lesions.main(["--mode", "evaluate", "--model", "classifier", *common, "--out", str(out), "--quiet"]) == 0
    assert loaded[-1] == checkpoint                   # the run's own segmenter
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["images"] == 6 and set(metrics["intervals"]) >= {"balanced_accuracy", "auc", "mean_auc"}
    assert set(metrics["calibration"]) == {"ece", "nll", "temperature"}
    rows = list(csv.reader(open(out / "probabilities.csv")))
    assert rows[0] == ["image", "benign", "malignant"] and rows[1][0].startswith("synthetic_test_")  # stems

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(generate(500 + i, (64, 80))[0]).save(images / f"ISIC_000000{i}.jpg")
    pred = tmp_path / "pred"
    assert lesions.main(["--mode", "predict", "--image", str(images), "--weights", str(segmenter_run),
                         "--classifier", str(logs), "--out", str(pred), "--quiet"]) == 0
    rows = list(csv.reader(open(pred / "probabilities.csv")))
    assert rows[0] == ["image", "benign", "malignant"] and len(rows) == 3
    assert all(abs(sum(float(v) for v in row[1:]) - 1) < 1e-3 for row in rows[1:])
    payload = json.load(open(pred / "predictions.json"))
    assert payload["classifier"]["class_names"] == ["benign", "malignant"]
    assert payload["classifier"]["criteria"][:3] == ["asymmetry", "pigment_network", "dots_globules"]
    for record in payload["images"]:
        assert set(record["classifier_probabilities"]) == {"benign", "malignant"}
        assert set(record["probabilities"]) == {"lesion"}           # the detector head's, kept beside
        assert set(record["criteria"]["dots_globules"]["probabilities"]) == {"absent", "typical", "atypical"}
        assert 0 <= record["criteria"]["streaks"]["probability"] <= 1
        assert 0 <= record["seven_point"]["score"] <= 7
    rows = list(csv.reader(open(pred / "criteria.csv")))
    assert rows[0][:2] == ["image", "asymmetry"] and rows[0][-1] == "seven_point_score" and len(rows) == 3

    report = tmp_path / "report"
    assert lesions.main(["--mode", "investigate", "--dataset", "synthetic:6", "--classes", "lesion",
                         "--classifier", str(logs), "--out", str(report), "--quiet",
                         *[a for pair in (("--config", f"{k}={v!r}") for k, v in TINY_SEG.items()) for a in pair]]) == 0
    summary = json.load(open(report / "summary.json"))
    assert not summary["errors"] and len(summary["classifier"]["images"]) == 6
    assert os.path.exists(report / "figures" / "classifier_gradcam.png")
    assert "Classifier, criteria and where it looked" in open(report / "index.html").read()


def test_cli_classifier_errors(tmp_path, capsys):
    assert lesions.main(["--mode", "train", "--model", "classifier", "--logs", str(tmp_path), "--quiet"]) == 2
    assert "--classes" in capsys.readouterr().err
    assert lesions.main(["--mode", "evaluate", "--model", "classifier", "--logs", str(tmp_path), "--quiet"]) == 2
    assert "no classifier run" in capsys.readouterr().err
