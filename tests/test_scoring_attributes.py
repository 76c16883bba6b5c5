"""ISIC 2018 Task 2 scoring: hand-worked accumulated Jaccard, absent attributes, folders, the official scorer."""
import os

import numpy as np
import pytest
from PIL import Image

from skinlesion import scoring


def masks(size, *boxes):
    """bool [H, W] with the (y1, x1, y2, x2) boxes set."""
    mask = np.zeros(size, bool)
    for y1, x1, y2, x2 in boxes:
        mask[y1:y2, x1:x2] = True
    return mask


def test_task2_jaccard_hand_worked():
    # Two 4x4 images (16 pixels each; with one size, normalising by it changes no ratio).
    # globules:        image 1 truth rows 0 (4 px), prediction cols 0-1 of rows 0-1 (4 px, 2 on the truth):
    #                  TP 2, FP 2, FN 2; image 2 empty both. J = 2 / (2 + 2 + 2) = 1/3.
    # pigment_network: image 1 truth = prediction = rows 0-1 (8 px): TP 8; image 2 truth row 3 (4 px),
    #                  nothing predicted: FN 4. J = 8 / 12 = 2/3 (the per-image mean would be 0.5).
    # streaks:         absent from every truth, nothing predicted: union 0, scores 1.0.
    # milia_like_cyst: absent from every truth, one pixel predicted in image 2: J = 0 / 1 = 0.0.
    # negative_network: in no truth dict: not scored (None), out of the mean.
    # mean = (1/3 + 2/3 + 1 + 0) / 4 = 0.5; micro = (2 + 8) / (6 + 12 + 0 + 1) = 10/19.
    size = (4, 4)
    empty = masks(size)
    truth_1 = {"globules": masks(size, (0, 0, 1, 4)), "pigment_network": masks(size, (0, 0, 2, 4)),
               "streaks": empty, "milia_like_cyst": empty}
    pred_1 = {"globules": masks(size, (0, 0, 2, 2)), "pigment_network": masks(size, (0, 0, 2, 4))}
    truth_2 = {"globules": empty, "pigment_network": masks(size, (3, 0, 4, 4)), "streaks": empty,
               "milia_like_cyst": empty}
    pred_2 = {"milia_like_cyst": masks(size, (1, 1, 2, 2)), "streaks": np.zeros(size, np.uint8)}
    result = scoring.task2_jaccard([("ISIC_0000001", truth_1, pred_1), ("ISIC_0000002", truth_2, pred_2)])
    assert result["jaccard"] == pytest.approx({"globules": 1 / 3, "milia_like_cyst": 0.0, "negative_network": None,
                                               "pigment_network": 2 / 3, "streaks": 1.0})
    assert result["jaccard"]["negative_network"] is None
    assert result["mean_jaccard"] == pytest.approx(0.5)
    assert result["micro_jaccard"] == pytest.approx(10 / 19)
    assert result["images"] == 2 and "negative_network" in result["notes"][0]
    assert result["per_attribute"]["pigment_network"]["truth_present"] == 2
    assert result["per_attribute"]["pigment_network"]["union"] == pytest.approx(12 / 16)


def test_task2_jaccard_weighs_images_by_area_fraction():
    # Image A 2x2 (4 px): globules truth = prediction = 2 px: TP 2/4 = 0.5.
    # Image B 4x4 (16 px): globules truth 4 px, nothing predicted: FN 4/16 = 0.25.
    # Official (normalised): 0.5 / (0.5 + 0.25) = 2/3. Raw pixel sums: 2 / (2 + 4) = 1/3.
    pairs = [({"globules": masks((2, 2), (0, 0, 1, 2))}, {"globules": masks((2, 2), (0, 0, 1, 2))}),
             ({"globules": masks((4, 4), (0, 0, 1, 4))}, {})]
    assert scoring.task2_jaccard(pairs, attributes=("globules",))["jaccard"]["globules"] == pytest.approx(2 / 3)
    raw = scoring.task2_jaccard(pairs, attributes=("globules",), normalize=False)
    assert raw["jaccard"]["globules"] == pytest.approx(1 / 3)


def test_task2_jaccard_names_the_image_on_a_size_mismatch():
    with pytest.raises(ValueError, match="image 0, attribute globules"):
        scoring.task2_jaccard([({"globules": masks((4, 4))}, {"globules": masks((2, 2))})])


def write_png(folder, name, mask):
    """Write a bool mask as a 0/255 PNG folder/name."""
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(folder, name))


@pytest.fixture
def task2_folders(tmp_path):
    """Truth and prediction folders: 3 images of two sizes, 5 attributes, random masks, streaks absent everywhere."""
    rng = np.random.default_rng(7)
    truth, pred = str(tmp_path / "truth"), str(tmp_path / "pred")
    sizes = {"ISIC_0000001": (30, 40), "ISIC_0000002": (50, 20), "ISIC_0000003": (30, 40)}
    for image_id, size in sizes.items():
        for attribute in ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"):
            name = f"{image_id}_attribute_{attribute}.png"
            truth_mask = rng.random(size) < 0.3 if attribute != "streaks" else np.zeros(size, bool)
            predicted = truth_mask ^ (rng.random(size) < 0.2) if attribute != "streaks" else np.zeros(size, bool)
            write_png(truth, name, truth_mask)
            write_png(pred, name, predicted)
    return truth, pred


def test_folder_scoring_matches_the_official_scorer(task2_folders):
    official = pytest.importorskip("isic_challenge_scoring.task2")
    import pathlib
    truth, pred = task2_folders
    expected = official.score(pathlib.Path(truth), pathlib.Path(pred))
    result = scoring.task2_jaccard((truth, pred))
    assert result["pairs"] == 15 and result["images"] == 3 and not result["missing"] and not result["skipped"]
    for attribute, value in result["jaccard"].items():
        assert value == pytest.approx(expected[attribute]["jaccard"], abs=1e-12), attribute
    assert result["jaccard"]["streaks"] == 1.0
    assert result["micro_jaccard"] == pytest.approx(expected["overall"], abs=1e-12)
    assert result["mean_jaccard"] == pytest.approx(np.mean([expected[a]["jaccard"] for a in result["jaccard"]]))


def test_folder_scoring_lists_missing_and_mismatched(task2_folders):
    truth, pred = task2_folders
    os.remove(os.path.join(pred, "ISIC_0000002_attribute_globules.png"))
    write_png(pred, "ISIC_0000003_attribute_streaks.png", np.zeros((5, 5), bool))
    write_png(pred, "ISIC_0000009_attribute_streaks.png", np.zeros((5, 5), bool))
    result = scoring.score_attribute_folders(truth, pred)
    assert result["missing"] == ["ISIC_0000002_attribute_globules.png"]
    assert [s["file"] for s in result["skipped"]] == ["ISIC_0000003_attribute_streaks.png"]
    assert result["unmatched_predictions"] == ["ISIC_0000009_attribute_streaks.png"]
    assert result["pairs"] == 13 and len(result["notes"]) == 2
    with pytest.raises(FileNotFoundError, match="Prediction attribute mask folder"):
        scoring.score_attribute_folders(truth, os.path.join(pred, "nope"))


def test_evaluate_scores_attributes_from_detections(tmp_path):
    """evaluate's per-image pair: truth from the attribute files (a missing file is unknown), prediction
    the union of each class's detections; accumulated by Task2Scorer exactly as task2_jaccard."""
    from PIL import Image
    from skinlesion.evaluation import attribute_pair
    from skinlesion.scoring import Task2Scorer
    from skinlesion.config import LesionConfig
    config = LesionConfig(classes="isic2018_attributes")
    assert config.DETECTION_MAX_INSTANCES == 32 and not config.DETECTION_FALLBACK   # attribute defaults
    names = list(config.CLASS_NAMES)
    globules = np.zeros((10, 10), np.uint8)
    globules[0:2, 0:5] = 255                               # 10 pixels
    Image.fromarray(globules).save(tmp_path / "g.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "s.png")
    info = {"attribute_masks": {"globules": str(tmp_path / "g.png"), "streaks": str(tmp_path / "s.png")}}
    masks = np.zeros((10, 10, 2), bool)
    masks[0:2, 0:3, 0] = True                              # globules: 6 of the 10 pixels
    masks[5:6, 0:4, 1] = True                              # streaks: 4 pixels where there are none
    result = {"masks": masks, "class_ids": np.array([names.index("globules"), names.index("streaks")])}
    truth, prediction = attribute_pair(info, result, names)
    assert set(truth) == {"globules", "streaks"} and set(prediction) == set(names[1:])
    scorer = Task2Scorer(names[1:])
    scorer.add(truth, prediction)
    scored = scorer.result()
    assert scored["jaccard"]["globules"] == pytest.approx(6 / 10)
    assert scored["jaccard"]["streaks"] == 0.0                   # absent in truth, predicted: 0
    assert scored["jaccard"]["milia_like_cyst"] is None          # no file: unknown, not scored
    assert scored["mean_jaccard"] == pytest.approx(0.3)
    assert scored == scoring.task2_jaccard([(truth, prediction)], attributes=names[1:])
