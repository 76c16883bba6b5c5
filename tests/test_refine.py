"""Coarse-to-fine inference (--refine): a small lesion is detected again in a crop and mapped back exactly."""
import types

import numpy as np
import pytest
from PIL import Image

from skinlesion.inference import Predictor, refine_results, refine_window

CLASSES = ["BG", "lesion"]


class DarkBlobModel:
    """Fake model: 'detects' the dark pixels of an image, outlined coarsely unless the image is small.

    Images larger than 100 px get a mask dilated into a box (what a model at a
    low working resolution gives a small lesion); crops of at most 100 px get
    the exact dark pixels, so refinement must bring the exact outline back.
    """

    config = types.SimpleNamespace(BATCH_SIZE=1)

    def __init__(self):
        self.sizes = []

    def detect(self, images):
        out = []
        for image in images:
            self.sizes.append(image.shape[:2])
            dark = image.mean(axis=-1) < 100
            h, w = dark.shape
            if not dark.any():
                out.append({"rois": np.zeros((0, 4), int), "class_ids": np.zeros(0, int),
                            "scores": np.zeros(0), "masks": np.zeros((h, w, 0), bool),
                            "probs": np.zeros((0, 2))})
                continue
            ys, xs = np.nonzero(dark)
            box = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
            mask = dark.copy()
            if max(h, w) > 100:
                mask[:] = False
                mask[box[0] - 3:box[2] + 3, box[1] - 3:box[3] + 3] = True
            out.append({"rois": np.array([box]), "class_ids": np.array([1]), "scores": np.array([0.9]),
                        "masks": mask[:, :, None], "probs": np.array([[0.1, 0.9]])})
        return out


def blob_image(h=300, w=400, centre=(120, 250), radius=12):
    image = np.full((h, w, 3), 200, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    lesion = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2
    image[lesion] = 40
    return image, lesion


def test_refine_window_is_square_inside_the_image_and_centred():
    assert refine_window((100, 100, 120, 140), (300, 400)) == (60, 70, 160, 170)  # 2.5 x 40, centred
    top, left, bottom, right = refine_window((0, 380, 10, 400), (300, 400))
    assert (bottom - top) == (right - left) == 50 and right == 400 and top == 0
    assert refine_window((0, 0, 290, 390), (300, 400)) == (0, 45, 300, 345)  # never larger than the image


def test_refined_detection_is_the_fine_outline_in_image_pixels():
    image, lesion = blob_image()
    model = DarkBlobModel()
    coarse = model.detect([image])
    results, refined = refine_results(model, [image], coarse, 0.5)
    assert refined == [True]
    assert results[0]["masks"].shape == (300, 400, 1)
    assert np.array_equal(results[0]["masks"][:, :, 0], lesion)
    ys, xs = np.nonzero(lesion)
    assert results[0]["rois"][0].tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    assert model.sizes[-1][0] == model.sizes[-1][1] <= 100


def test_large_lesions_and_empty_results_are_left_alone():
    image, _ = blob_image(radius=100, centre=(150, 200))
    model = DarkBlobModel()
    coarse = model.detect([image])
    results, refined = refine_results(model, [image], coarse, 0.5)
    assert refined == [False] and results[0] is coarse[0] and len(model.sizes) == 1
    blank = np.full((300, 400, 3), 200, np.uint8)
    empty = model.detect([blank])
    assert refine_results(model, [blank], empty, 0.5)[1] == [False]


@pytest.mark.parametrize("refine", [False, True])
def test_predictor_refine_flag_and_record(tmp_path, refine):
    image, lesion = blob_image()
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    out = tmp_path / f"out{refine}"
    predictor = Predictor(DarkBlobModel(), CLASSES, str(out), 0.5, write_overlays=False, refine=refine)
    outcome = predictor.run(Predictor.file_sources([str(path)]), keep_masks=True, progress=False)
    record, mask = outcome["images"][0], outcome["masks"]["img"]
    assert record["refined"] is refine
    jaccard = np.logical_and(mask, lesion).sum() / np.logical_or(mask, lesion).sum()
    assert (jaccard == 1.0) if refine else (jaccard < 0.7)
