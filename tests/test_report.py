"""The investigate report: a page that opens from disk, valid figures, summary.json's contract, helpers."""
import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from skinlesion import LesionConfig, LesionDataset  # noqa: E402
from skinlesion import report, report_figures  # noqa: E402

CONTRACT_KEYS = {"layout", "images", "classes", "skipped", "subsets", "anchors", "rpn_targets"}
MODEL_KEYS = {"stages", "segmentation", "detection", "classification", "weights", "worst"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_config():
    """A 64 px inference config with narrow heads that keeps every detection."""
    return LesionConfig(classes="isic2017", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, IMAGES_PER_GPU=1,
                        TOP_DOWN_PYRAMID_SIZE=32, FPN_CLASSIF_FC_LAYERS_SIZE=64,
                        RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), DETECTION_MIN_CONFIDENCE=0.0,
                        PRE_NMS_LIMIT=200, POST_NMS_ROIS_INFERENCE=50)


@pytest.fixture(scope="module")
def val_dataset():
    """Six synthetic 64x64 validation images, two per isic2017 class."""
    dataset = LesionDataset()
    dataset.load(None, "val", classes="isic2017", count=6, size=(64, 64))
    return dataset


@pytest.fixture(scope="module")
def tiny_model(tiny_config, tmp_path_factory):
    """An untrained inference model (random weights: it predicts anything, or nothing)."""
    from mrcnn.model import MaskRCNN
    return MaskRCNN("inference", tiny_config, str(tmp_path_factory.mktemp("logs")))


@pytest.fixture(scope="module")
def model_report(val_dataset, tiny_config, tiny_model, tmp_path_factory):
    """(out_dir, summary) of a report with the untrained model."""
    train_summary = LesionDataset().load(None, "train", classes="isic2017", count=9, size=(64, 64))
    out_dir = str(tmp_path_factory.mktemp("with_model"))
    summary = report.investigate(val_dataset, out_dir, tiny_config, model=tiny_model,
                                 subset_summaries={"train": train_summary})
    return out_dir, summary


class NothingDetected:
    """A MaskRCNN stand-in whose detection stage finds nothing (the RPN and heads still run)."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def run_inference(self, images):
        out, molded, metas, windows = self._model.run_inference(images)
        out = dict(out, detections=np.zeros_like(out["detections"]),
                   detection_probs=np.zeros_like(out["detection_probs"]))
        return out, molded, metas, windows

    def detect(self, images, verbose=0):
        classes = self._model.config.NUM_CLASSES
        return [{"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
                 "scores": np.zeros(0, np.float32), "masks": np.zeros(image.shape[:2] + (0,), bool),
                 "probs": np.zeros((0, classes), np.float32)} for image in images]


def check_report(out_dir):
    """Assert the page links only existing local files, the figures are PNGs, summary.json is strict JSON.

    Returns: (page text, summary dict read back).
    """
    with open(os.path.join(out_dir, "index.html"), encoding="utf-8") as handle:
        page = handle.read()
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and not re.search(r"<script|<link|@import|url\(", page)
    for link in links:
        if link.startswith("#"):
            assert f'id="{link[1:]}"' in page, link
            continue
        assert not re.match(r"[a-z]+:", link) and not link.startswith("/"), link  # relative, no scheme
        assert os.path.isfile(os.path.join(out_dir, link)), link
    images = [link for link in links if link.startswith("figures/")]
    assert images
    for link in images:
        path = os.path.join(out_dir, link)
        assert os.path.getsize(path) > 100
        with open(path, "rb") as handle:
            assert handle.read(8) == PNG_SIGNATURE, link

    def no_nan(value):
        raise AssertionError(f"summary.json holds {value}")
    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle, parse_constant=no_nan)
    assert CONTRACT_KEYS <= set(summary)
    return page, summary


def test_report_without_model_lists_a_broken_image(tmp_path, tiny_config):
    from skinlesion.synthetic import write_folder
    from mrcnn.anchors import get_anchors

    root = tmp_path / "data"
    write_folder(str(root), 8, size=(64, 64), seed=1, scheme="isic2017")
    dataset = LesionDataset()
    dataset.load(str(root), "all", classes="isic2017")
    broken = dataset.image_info[2]["path"]
    with open(broken, "wb") as handle:
        handle.write(b"not an image")  # breaks after load: the report must skip it, not crash

    returned = report.investigate(dataset, str(tmp_path / "out"), tiny_config, model=None, max_images=20,
                                  title="Lesions <&> report")
    page, summary = check_report(str(tmp_path / "out"))
    assert summary == returned
    assert summary["layout"] == "folder" and summary["images"] == 8 and summary["sampled_images"] == 7
    assert sum(summary["classes"].values()) == 8
    assert [s["file"] for s in summary["skipped"]] == [broken]
    assert os.path.basename(broken) in page
    assert "Lesions &lt;&amp;&gt; report" in page
    assert not MODEL_KEYS & set(summary) and summary["errors"] == []
    assert sum(summary["anchors"].values()) == len(get_anchors(tiny_config, tiny_config.IMAGE_SHAPE))
    targets = summary["rpn_targets"]
    assert targets["positive"] >= 1 and targets["positive"] + targets["negative"] + targets["neutral"] == \
        sum(summary["anchors"].values())
    assert targets["positive"] + targets["negative"] <= tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE


def test_report_with_untrained_model_has_results(model_report):
    out_dir, returned = model_report
    page, summary = check_report(out_dir)
    assert MODEL_KEYS <= set(summary) and summary["errors"] == [] and summary["skipped"] == []
    assert summary["subsets"]["train"]["images"] == 9 and summary["subsets"]["val"]["images"] == 6
    stages = summary["stages"]
    assert stages["anchors"] >= stages["pre_nms"] >= stages["post_nms"] >= stages["rois_foreground"]
    assert stages["pre_nms"] == 200 and stages["detections"] <= 4
    segmentation = summary["segmentation"]
    assert set(segmentation) >= {"jaccard", "threshold_jaccard", "dice"}
    assert 0 <= segmentation["jaccard"] <= segmentation["dice"] <= 1
    assert set(summary["detection"]) >= {"mAP50", "mAP"}
    assert set(summary["classification"]) >= {"balanced_accuracy", "mean_auc", "auc", "confusion"}
    assert np.sum(summary["classification"]["confusion"]) == 6
    jaccards = [row["jaccard"] for row in summary["worst"]]
    assert len(jaccards) == 6 and jaccards == sorted(jaccards)
    assert summary["weights"]["layers"] > 50 and isinstance(summary["weights"]["flagged"], list)
    for anchor in ("data", "anchors", "stages", "results", "weights"):
        assert f'href="#{anchor}"' in page


def test_report_when_model_detects_nothing(tmp_path, val_dataset, tiny_config, tiny_model):
    summary = report.investigate(val_dataset, str(tmp_path), tiny_config, model=NothingDetected(tiny_model),
                                 max_images=4)
    _, summary = check_report(str(tmp_path))
    assert summary["errors"] == [] and summary["skipped"] == [] and summary["stages"]["detections"] == 0
    assert summary["segmentation"]["jaccard"] == 0.0  # every lesion missed
    assert summary["detection"]["mAP50"] == 0.0
    confusion = np.array(summary["classification"]["confusion"])
    assert confusion[:, -1].sum() == 4 and confusion[:, :-1].sum() == 0  # all in "no detection"
    assert all(row["predicted"] is None for row in summary["worst"])


# --------------------------------------------------------------------------- numpy helpers

def test_top_rpn_proposals_ranks_refines_and_clips():
    anchors = np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2]], np.float32)
    scores = np.array([0.2, 0.9, 0.5])
    std = np.array([0.1, 0.1, 0.2, 0.2])
    deltas = np.zeros((3, 4), np.float32)
    deltas[1] = [2.5, 0, 0, 0]  # dy = 0.25 of the height after * std: centre 0.7 -> 0.8
    order, top_anchors, refined, top_scores = report.top_rpn_proposals(scores, deltas, anchors, std, 2)
    assert order.tolist() == [1, 2] and top_scores.tolist() == [0.9, 0.5]
    np.testing.assert_allclose(top_anchors, anchors[[1, 2]])
    np.testing.assert_allclose(refined, [[0.6, 0.5, 1.0, 0.9], [0.0, 0.0, 0.2, 0.2]], atol=1e-6)


def test_refine_rois_takes_the_argmax_class_deltas_and_flags_padding():
    rois = np.array([[0.2, 0.2, 0.4, 0.4], [0, 0, 0, 0]], np.float32)
    probs = np.array([[0.1, 0.7, 0.2], [1.0, 0.0, 0.0]])
    deltas = np.zeros((2, 3, 4))
    deltas[0, 1] = [0, 1.0, 0, 0]  # class 1: dx = 0.1 of the width after * std
    deltas[0, 2] = [5.0, 5.0, 0, 0]  # another class's deltas must not be used
    out = report.refine_rois(rois, probs, deltas, [0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 1.0, 1.0])
    assert out["valid"].tolist() == [True, False] and out["class_ids"].tolist() == [1, 0]
    np.testing.assert_allclose(out["scores"], [0.7, 1.0])
    np.testing.assert_allclose(out["refined"][0], [0.2, 0.22, 0.4, 0.42], atol=1e-6)


def test_pooled_precision_recall_by_hand():
    truth = np.zeros((4, 4, 1), bool)
    truth[:2, :2] = True
    miss = np.zeros((4, 4, 1), bool)
    miss[3, 3] = True
    record = {"gt_boxes": np.array([[0, 0, 2, 2]]), "gt_class_ids": np.array([1]), "gt_masks": truth}
    hit_image = dict(record, pred_boxes=np.array([[0, 0, 2, 2]]), pred_class_ids=np.array([1]),
                     pred_scores=np.array([0.6]), pred_masks=truth)
    miss_image = dict(record, pred_boxes=np.array([[3, 3, 4, 4]]), pred_class_ids=np.array([1]),
                      pred_scores=np.array([0.9]), pred_masks=miss)
    matches = [report.match_detections(hit_image), report.match_detections(miss_image)]
    assert matches[0][1].tolist() == [True] and matches[1][1].tolist() == [False] and matches[0][2] == 1
    precisions, recalls, ap = report.pooled_precision_recall(matches)
    # Ranked: miss (0.9), hit (0.6) -> precision 0, 1/2 at recall 0, 1/2 of two truths.
    assert ap == pytest.approx(0.25)
    assert recalls.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert report.pooled_precision_recall([])[2] is None


def test_thumbnail_caps_the_longer_side():
    image = np.zeros((600, 300, 3), np.uint8)
    mask = np.zeros((600, 300), bool)
    mask[:300] = True
    assert report_figures.thumbnail(image, side=100).shape == (100, 50, 3)
    small = report_figures.thumbnail(mask, side=100, is_mask=True)
    assert small.dtype == bool and small.shape == (100, 50) and small[:50].all() and not small[50:].any()
    assert report_figures.thumbnail(image[:50, :50], side=100).shape == (50, 50, 3)


def test_json_safe_turns_numpy_and_nan_into_json():
    value = report.json_safe({"a": np.float32(np.nan), "b": np.arange(2), 3: (np.bool_(True), float("inf"))})
    assert value == {"a": None, "b": [0, 1], "3": [True, None]}
    json.dumps(value, allow_nan=False)
