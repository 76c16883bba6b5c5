"""ISIC scoring agrees with the official scorer (isic-challenge-scoring 5.6.0).

The official package is the oracle and is imported by tests only. Its CSV
reader (load_csv.parse_csv) calls DataFrame.applymap, removed in pandas 3,
so the classification oracle is fed DataFrames directly.
"""
import json
import pathlib
import types

import numpy as np
import pytest
from PIL import Image

from skinlesion import scoring

isic = pytest.importorskip("isic_challenge_scoring")
pd = pytest.importorskip("pandas")
from isic_challenge_scoring import ClassificationMetric, ClassificationScore, SegmentationScore  # noqa: E402

# The official package uses Series.rename(inplace=True), deprecated in pandas 3.1.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

METRICS = scoring.SEGMENTATION_METRICS
TOLERANCE = 1e-6


# --------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------

def _official_segmentation(pairs):
    """Official macro-averaged metrics of [(truth uint8, pred uint8)]."""
    image_pairs = [types.SimpleNamespace(truth_image=truth, prediction_image=pred,
                                         image_id=f"ISIC_{i:07d}")
                   for i, (truth, pred) in enumerate(pairs)]
    return SegmentationScore(image_pairs).macro_average.to_dict()


def _square(size, top, left, side, value=255):
    """uint8 [size, size] image with a filled square of `value`."""
    image = np.zeros((size, size), dtype=np.uint8)
    image[top:top + side, left:left + side] = value
    return image


def _hand_made_pairs():
    """Named (truth, prediction) uint8 pairs covering the special cases."""
    empty = np.zeros((20, 20), dtype=np.uint8)
    full = np.full((20, 20), 255, dtype=np.uint8)
    lesion = _square(20, 5, 5, 10)                     # 100 px
    # Prediction inside the lesion: J = area / 100.
    j_below = np.zeros_like(empty)
    j_below[5:15, 5:11] = 255
    j_below[5:9, 11] = 255                             # 64 px -> J = 0.64
    j_above = np.zeros_like(empty)
    j_above[5:15, 5:11] = 255
    j_above[5:11, 11] = 255                            # 66 px -> J = 0.66
    j_exact = np.zeros_like(empty)
    j_exact[5:15, 5:11] = 255
    j_exact[5:10, 11] = 255                            # 65 px -> J = 0.65 (kept)
    return {
        "both_empty": (empty, empty),
        "empty_truth": (empty, lesion),
        "empty_prediction": (lesion, empty),
        "identical": (lesion, lesion.copy()),
        "disjoint": (lesion, _square(20, 0, 0, 4)),
        "j_below_065": (lesion, j_below),
        "j_above_065": (lesion, j_above),
        "j_exactly_065": (lesion, j_exact),
        "value_128_is_background": (_square(20, 5, 5, 10, 128), lesion),
        "value_129_is_foreground": (_square(20, 5, 5, 10, 129), lesion),
        "full_truth": (full, lesion),
        "full_both": (full, full.copy()),
    }


@pytest.mark.parametrize("case", sorted(_hand_made_pairs()))
def test_hand_made_case_agrees_with_official(case):
    truth, pred = _hand_made_pairs()[case]
    ours = scoring.segmentation_metrics(truth, pred)
    official = _official_segmentation([(truth, pred)])
    for name in METRICS:
        assert ours[name] == pytest.approx(official[name], abs=TOLERANCE), (case, name)


def test_hand_made_values():
    pairs = _hand_made_pairs()
    assert scoring.segmentation_metrics(*pairs["both_empty"])["jaccard"] == 1.0
    assert scoring.segmentation_metrics(*pairs["empty_truth"])["jaccard"] == 0.0
    assert scoring.segmentation_metrics(*pairs["empty_truth"])["sensitivity"] == 1.0
    assert scoring.segmentation_metrics(*pairs["empty_prediction"])["dice"] == 0.0
    below = scoring.segmentation_metrics(*pairs["j_below_065"])
    assert below["jaccard"] == pytest.approx(0.64) and below["threshold_jaccard"] == 0.0
    above = scoring.segmentation_metrics(*pairs["j_above_065"])
    assert above["threshold_jaccard"] == pytest.approx(0.66)
    assert scoring.segmentation_metrics(*pairs["j_exactly_065"])["threshold_jaccard"] == \
        pytest.approx(0.65)
    assert scoring.segmentation_metrics(*pairs["value_128_is_background"])["jaccard"] == 0.0
    assert scoring.segmentation_metrics(*pairs["value_129_is_foreground"])["jaccard"] == 1.0


def test_bool_masks_score_like_uint8():
    truth, pred = _hand_made_pairs()["j_above_065"]
    assert scoring.segmentation_metrics(truth > 128, pred > 128) == \
        scoring.segmentation_metrics(truth, pred)


def test_random_mask_set_mean_agrees_with_official():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(25):
        size = int(rng.integers(8, 24))
        truth = np.where(rng.random((size, size)) < rng.random(), 255, 0).astype(np.uint8)
        pred = np.where(rng.random((size, size)) < rng.random(), 255, 0).astype(np.uint8)
        # Values around the threshold, to exercise > 128.
        pred[rng.random((size, size)) < 0.1] = rng.choice([127, 128, 129, 200])
        pairs.append((truth, pred))
    pairs += list(_hand_made_pairs().values())
    ours = scoring.score_segmentation(pairs)
    official = _official_segmentation(pairs)
    assert ours["count"] == len(pairs)
    for name in METRICS:
        assert ours["mean"][name] == pytest.approx(official[name], abs=TOLERANCE), name
    json.dumps(ours)


def test_score_segmentation_accepts_dicts_and_mappings():
    truth, pred = _hand_made_pairs()["j_above_065"]
    from_dicts = scoring.score_segmentation([{"image": "a", "truth": truth, "prediction": pred}])
    from_mapping = scoring.score_segmentation({"a": (truth, pred)})
    assert from_dicts == from_mapping
    assert from_dicts["per_image"][0]["image"] == "a"
    assert set(from_dicts["mean"]) == {"jaccard", "threshold_jaccard", "dice",
                                       "sensitivity", "specificity", "accuracy"}
    assert scoring.score_segmentation([])["mean"]["jaccard"] is None


def _save(folder, name, array, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(folder / name)


def test_isic_folder_agrees_with_official_from_dir(tmp_path):
    rng = np.random.default_rng(1)
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    for index, (truth, pred) in enumerate(_hand_made_pairs().values()):
        isic_id = f"ISIC_{index + 10:07d}"
        _save(truth_dir, f"{isic_id}_segmentation.png", truth)
        # Mixed naming: ISIC id, or only its 7 digits, as the official scorer allows.
        pred_name = f"{isic_id}_segmentation.png" if index % 2 else f"{index + 10:07d}_mask.png"
        _save(pred_dir, pred_name, pred)
    noisy = np.where(rng.random((16, 16)) < 0.4, 255, 0).astype(np.uint8)
    _save(truth_dir, "ISIC_0000099_segmentation.png", noisy)
    _save(pred_dir, "ISIC_0000099.png", noisy > 0, mode="1")   # a 1-bit file
    (truth_dir / "LICENSE.txt").write_text("licence")

    ours = scoring.score_mask_folders(truth_dir, pred_dir)
    official = SegmentationScore.from_dir(truth_dir, pred_dir).macro_average.to_dict()
    assert ours["count"] == len(_hand_made_pairs()) + 1
    assert ours["missing"] == [] and ours["skipped"] == [] and ours["notes"] == []
    for name in METRICS:
        assert ours["mean"][name] == pytest.approx(official[name], abs=TOLERANCE), name
    assert ours["per_image"][0]["image"] == "ISIC_0000010"
    json.dumps(ours)


def test_ph2_folder_matches_by_stem(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    lesion = _square(20, 5, 5, 10)
    _save(truth_dir, "IMD002_lesion.bmp", lesion)
    _save(truth_dir, "IMD003_lesion.bmp", lesion)
    _save(pred_dir, "IMD002_segmentation.png", lesion)
    _save(pred_dir, "IMD003_mask.png", _square(20, 0, 0, 4))
    result = scoring.score_mask_folders(truth_dir, pred_dir)
    assert [row["image"] for row in result["per_image"]] == ["IMD002", "IMD003"]
    assert result["per_image"][0]["jaccard"] == 1.0
    assert result["per_image"][1]["jaccard"] == 0.0
    assert scoring.mask_key("IMD002_Segmentation.png") == "IMD002"
    assert scoring.mask_key("ISIC_0012345_attribute_x.png") == "ISIC_0012345"


def test_bad_files_are_skipped_and_listed(tmp_path, caplog):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    lesion = _square(20, 5, 5, 10)
    for index in range(5):
        _save(truth_dir, f"ISIC_{index:07d}_segmentation.png", lesion)
    _save(pred_dir, "ISIC_0000000.png", lesion)                       # fine
    (pred_dir / "ISIC_0000001.png").write_bytes(b"not a png")         # unreadable
    _save(pred_dir, "ISIC_0000002.png", _square(30, 5, 5, 10))        # wrong size
    # ISIC_0000003: no prediction at all
    _save(pred_dir, "ISIC_0000004_a.png", lesion)                     # two candidates
    _save(pred_dir, "ISIC_0000004_b.png", lesion)
    _save(pred_dir, "IMD999_segmentation.png", lesion)                # matches nothing
    with caplog.at_level("WARNING"):
        result = scoring.score_mask_folders(truth_dir, pred_dir)
    assert result["count"] == 1 and result["mean"]["jaccard"] == 1.0
    assert result["missing"] == ["ISIC_0000003_segmentation.png"]
    skipped_files = {item["file"] for item in result["skipped"]}
    assert skipped_files == {"ISIC_0000001.png", "ISIC_0000002.png",
                             "ISIC_0000004_segmentation.png"}
    assert result["unmatched_predictions"] == ["IMD999_segmentation.png"]
    assert any("official scorer" in note for note in result["notes"])
    assert "ISIC_0000001.png" in caplog.text
    json.dumps(result)


# --------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------

CLASSES = ["MEL", "NV", "BCC", "BKL"]


def _official_classification(truth_onehot, probs, class_names):
    """Official per-category table and balanced accuracy."""
    index = pd.Index([f"ISIC_{i + 1:07d}" for i in range(len(probs))], name="image")
    truth = pd.DataFrame(truth_onehot.astype(float), index=index, columns=class_names)
    prediction = pd.DataFrame(probs, index=index, columns=class_names)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    score = ClassificationScore(truth, prediction, weights,
                                ClassificationMetric.BALANCED_ACCURACY)
    return score.per_category, score.aggregate.at["balanced_accuracy"]


def _random_table(seed, rows, ties):
    """(one-hot truth [N, K], probs [N, K]) with every class present."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(len(CLASSES)),
                             rng.integers(0, len(CLASSES), rows - len(CLASSES))])
    onehot = np.eye(len(CLASSES))[labels]
    logits = rng.normal(size=(rows, len(CLASSES))) + 1.5 * onehot
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if ties:
        # Coarse values: tied scores across images and tied maxima within rows.
        probs = np.round(probs * 4) / 4
        probs[:5] = 0.25
    return onehot, probs


def _assert_classification_agrees(ours, truth, probs):
    per_category, official_balanced = _official_classification(truth, probs, CLASSES)
    assert ours["balanced_accuracy"] == pytest.approx(official_balanced, abs=TOLERANCE)
    for name in CLASSES:
        for key in ("auc", "ap", "auc_sens_80", "sensitivity", "specificity"):
            assert ours["per_class"][name][key] == pytest.approx(
                per_category.at[name, key], abs=TOLERANCE), (name, key)
        assert ours["auc"][name] == ours["per_class"][name]["auc"]
    assert ours["mean_auc"] == pytest.approx(per_category["auc"].mean(), abs=TOLERANCE)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_classification_agrees_with_official(seed, ties):
    truth, probs = _random_table(seed, rows=80, ties=ties)
    ours = scoring.score_classification(truth, probs, CLASSES)
    _assert_classification_agrees(ours, truth, probs)
    # Class indices give the same result as one-hot truth.
    assert scoring.score_classification(truth.argmax(axis=1), probs, CLASSES) == ours
    json.dumps(ours, allow_nan=False)


def test_tied_maximum_counts_as_wrong():
    truth = np.array([0, 1])
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])
    assert scoring.balanced_accuracy(truth, probs) == pytest.approx(0.5)


def test_class_without_positives_reports_none():
    truth = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    result = scoring.score_classification(truth, probs, ["a", "b", "c"])
    assert result["per_class"]["c"]["auc"] is None
    assert result["per_class"]["c"]["ap"] is None
    assert result["per_class"]["c"]["sensitivity"] is None
    assert result["per_class"]["c"]["specificity"] == 1.0
    assert result["mean_auc"] == 1.0
    assert any("'c'" in note for note in result["notes"])
    json.dumps(result, allow_nan=False)


def _write_csv(path, image_ids, columns, table):
    lines = [",".join(["image"] + columns)]
    lines += [",".join([image_id] + [repr(float(v)) for v in row])
              for image_id, row in zip(image_ids, table)]
    path.write_text("\n".join(lines) + "\n")


def test_classification_files_agree_with_official(tmp_path):
    truth, probs = _random_table(4, rows=50, ties=False)
    image_ids = [f"ISIC_{i + 1:07d}" for i in range(len(probs))]
    _write_csv(tmp_path / "truth.csv", image_ids, CLASSES, truth)
    # Shuffled rows, ".jpg" names, columns in another order, one missing row, one extra.
    permutation = np.random.default_rng(0).permutation(len(probs))
    order = permutation[1:]
    _write_csv(tmp_path / "probabilities.csv",
               [image_ids[i] + ".jpg" for i in order] + ["ISIC_9999999"],
               CLASSES[::-1], np.vstack([probs[order][:, ::-1], np.full(4, 0.25)]))
    result = scoring.score_classification_files(tmp_path / "truth.csv",
                                                tmp_path / "probabilities.csv")
    assert result["missing"] == [image_ids[permutation[0]]]
    assert result["extra"] == ["ISIC_9999999"]
    kept = np.sort(order)
    _assert_classification_agrees(result, truth[kept], probs[kept])
    json.dumps(result, allow_nan=False)
