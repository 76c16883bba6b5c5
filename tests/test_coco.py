"""COCO export: our RLE matches pycocotools; the JSON files load in COCO()."""
import contextlib
import io
import json

import numpy as np
import pytest

from skinlesion import coco

mask_utils = pytest.importorskip("pycocotools.mask")
COCO = pytest.importorskip("pycocotools.coco").COCO
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval

# pycocotools 2.0.11's decode trips a NumPy 2 DeprecationWarning (copy keyword).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation")


def _test_masks():
    """Masks that hit the encoder's edge cases."""
    rng = np.random.default_rng(0)
    masks = [
        np.zeros((5, 7), bool),
        np.ones((5, 7), bool),
        np.eye(6, 9, dtype=bool),                       # starts with foreground
        rng.random((1, 13)) < 0.5,
        rng.random((13, 1)) < 0.5,
        rng.random((37, 23)) < 0.5,                     # many short runs
        rng.random((64, 48)) < 0.02,                    # long runs: multi-group counts
    ]
    big = np.zeros((300, 200), bool)
    big[40:260, 30:170] = True                          # runs > 2**10, negative deltas
    masks.append(big)
    return masks


@pytest.mark.parametrize("index", range(len(_test_masks())))
def test_compressed_rle_equals_pycocotools(index):
    mask = _test_masks()[index]
    ours = coco.encode_rle(mask)
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours["size"] == list(theirs["size"])
    assert ours["counts"] == theirs["counts"].decode("ascii")
    ours_bytes = {"size": ours["size"], "counts": ours["counts"].encode("ascii")}
    np.testing.assert_array_equal(mask_utils.decode(ours_bytes).astype(bool), mask)
    np.testing.assert_array_equal(coco.decode_rle(ours), mask)


@pytest.mark.parametrize("index", range(len(_test_masks())))
def test_uncompressed_rle_decodes_in_pycocotools(index):
    mask = _test_masks()[index]
    rle = coco.encode_rle(mask, compressed=False)
    assert sum(rle["counts"]) == mask.size
    converted = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(converted).astype(bool), mask)
    np.testing.assert_array_equal(coco.decode_rle(rle), mask)


def test_string_counts_round_trip():
    counts = np.array([0, 5, 3000, 1, 70000, 2, 0, 31, 32, 33])
    assert np.array_equal(coco.string_to_counts(coco.counts_to_string(counts)), counts)


def _records():
    """Two images, two classes, with detections (one wrong, one missed)."""
    a = np.zeros((30, 40, 2), bool)
    a[2:12, 3:15, 0] = True
    a[15:28, 20:38, 1] = True
    b = np.zeros((25, 25, 1), bool)
    b[5:20, 5:20, 0] = True
    pred_b = np.zeros((25, 25, 2), bool)
    pred_b[0:4, 0:4, 0] = True
    return [
        {"image_id": 7, "file_name": "ISIC_0000007.jpg", "gt_masks": a,
         "gt_class_ids": np.array([1, 2]), "pred_masks": a.copy(),
         "pred_class_ids": np.array([1, 2]), "pred_scores": np.array([0.9, 0.8])},
        {"image_id": "IMD002", "gt_masks": b, "gt_class_ids": np.array([1]),
         "masks": pred_b, "class_ids": np.array([2, 1]), "scores": np.array([0.7, 0.1])},
    ]


def test_gt_and_results_load_in_pycocotools(tmp_path):
    records = _records()
    gt = coco.gt_to_coco(records, ["BG", "melanoma", "nevus"])
    results = coco.detections_to_coco(records)
    gt_path = coco.write_coco_json(tmp_path / "sub" / "gt.json", gt)
    res_path = coco.write_coco_json(tmp_path / "results.json", results)

    assert [image["id"] for image in gt["images"]] == [7, 2]  # int id kept, else position + 1
    assert [c["name"] for c in gt["categories"]] == ["melanoma", "nevus"]
    assert gt["annotations"][0]["bbox"] == [3.0, 2.0, 12.0, 10.0]
    assert gt["annotations"][0]["area"] == 120
    assert results[2]["image_id"] == 2 and results[2]["category_id"] == 2

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(res_path))
        evaluation = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
    assert len(coco_dt.getAnnIds()) == 4
    decoded = coco_gt.annToMask(coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[7]))[1])
    np.testing.assert_array_equal(decoded.astype(bool), records[0]["gt_masks"][..., 1])
    bbox = mask_utils.toBbox(coco_dt.loadAnns(coco_dt.getAnnIds(imgIds=[7]))[0]["segmentation"])
    np.testing.assert_allclose(bbox, results[0]["bbox"])
    # AP@0.5, per class: melanoma 2 GT, 1 found at rank 1 -> 0.5 (COCO's 101
    # points: 51/101); nevus 1 GT found -> 1.0.
    precision = evaluation.eval["precision"][0, :, :, 0, -1]
    assert precision[:, 1].mean() == pytest.approx(1.0)
    assert precision[:, 0].mean() == pytest.approx(51 / 101)


def test_numpy_encoder_gives_the_same_json(monkeypatch):
    with_pycocotools = coco.gt_to_coco(_records(), ["BG", "melanoma", "nevus"])
    monkeypatch.setattr(coco, "_coco_mask", None)
    without = coco.gt_to_coco(_records(), ["BG", "melanoma", "nevus"])
    assert json.dumps(without) == json.dumps(with_pycocotools)
    assert json.dumps(coco.detections_to_coco(_records()))  # JSON-serializable


def test_empty_gt_instance_is_left_out():
    records = _records()
    records[1]["gt_masks"] = np.zeros((25, 25, 1), bool)
    gt = coco.gt_to_coco(records, {1: "melanoma", 2: "nevus"})
    assert len(gt["annotations"]) == 2 and len(gt["images"]) == 2
