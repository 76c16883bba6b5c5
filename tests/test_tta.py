"""Test-time augmentation in the Predictor: flips are undone and the lesion masks voted."""
import json
import types

import numpy as np
from PIL import Image

from skinlesion.inference import Predictor, flip_image, vote_lesion_masks

CLASSES = ["BG", "nevus", "melanoma"]


class FixedPlaceModel:
    """Fake model that always 'detects' the left half of whatever image it gets.

    On a left-right flip that half is the original's right half, so the flips
    disagree and the vote must settle it.
    """

    config = types.SimpleNamespace(BATCH_SIZE=1)

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        out = []
        for image in images:
            h, w = image.shape[:2]
            masks = np.zeros((h, w, 1), bool)
            masks[:, : w // 2, 0] = True
            # melanoma probability follows the mean brightness of the detected half
            p = float(image[:, : w // 2].mean() / 255.0)
            out.append({"rois": np.array([[0, 0, h, w // 2]]), "class_ids": np.array([1]),
                        "scores": np.array([0.9]), "masks": masks,
                        "probs": np.array([[0.0, 1 - p, p]])})
        return out


def run_predictor(tmp_path, image, tta):
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    model = FixedPlaceModel()
    out = tmp_path / ("tta" if tta else "plain")
    predictor = Predictor(model, CLASSES, str(out), 0.5, write_overlays=False, tta=tta)
    outcome = predictor.run(Predictor.file_sources([str(path)]), keep_masks=True, progress=False)
    predictor.write_summary(outcome)
    return model, outcome, out


def test_flip_is_its_own_inverse_and_vote_is_a_majority():
    image = np.arange(24).reshape(2, 3, 4)
    for flip in ("horizontal", "vertical"):
        assert np.array_equal(flip_image(flip_image(image, flip), flip), image)
    assert flip_image(image, "horizontal")[0, 0, 0] == image[0, 2, 0]
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[1, 0, 1, 0]], bool)
    c = np.array([[0, 1, 1, 0]], bool)
    assert vote_lesion_masks([a, b, c]).tolist() == [[True, True, True, False]]
    # two masks: ties go to the first (the unflipped image)
    assert vote_lesion_masks([a, b]).tolist() == [[True, True, False, False]]


def test_tta_votes_unflipped_masks_and_averages_probabilities(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, 15:] = 255  # right half bright
    model, outcome, out = run_predictor(tmp_path, image, tta=True)
    assert model.calls == 3, "plain image and two flips"
    mask = outcome["masks"]["img"]
    # plain: left half; left-right flip, undone: right half; top-bottom flip, undone: left half.
    expected = np.zeros((20, 30), bool)
    expected[:, :15] = True
    assert np.array_equal(mask, expected)
    saved = np.array(Image.open(out / "masks" / "img_segmentation.png")) > 0
    assert np.array_equal(saved, expected)
    record = json.load(open(out / "predictions.json"))["images"][0]
    # melanoma p: plain 0 (dark left half), flipped left-right 1 (bright half), top-bottom 0.
    assert record["probabilities"]["melanoma"] == np.float64(1 / 3).round(6)

    _, plain, _ = run_predictor(tmp_path, image, tta=False)
    assert np.array_equal(plain["masks"]["img"], expected)
    assert json.load(open(tmp_path / "plain" / "predictions.json"))["images"][0]["probabilities"]["melanoma"] == 0
