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
    """An untrained inference model (random weights, seeded so every run sees the same detections)."""
    import keras
    from mrcnn.model import MaskRCNN
    keras.utils.set_random_seed(5)
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


def test_report_scores_as_evaluate_does(model_report, val_dataset, tiny_config, tiny_model, tmp_path):
    """investigate and evaluate (lesions.py --mode evaluate) give the same numbers on the same model and images."""
    from skinlesion import scoring
    from skinlesion.evaluation import evaluate_model

    _, summary = model_report
    metrics, per_image = evaluate_model(tiny_model, tiny_config, val_dataset, str(tmp_path), progress=False,
                                        write_overlays=False)
    evaluated = {row["image"]: row for row in per_image}
    reported = {row["image"]: row for row in summary["per_image"]}
    assert sorted(reported) == sorted(evaluated) and len(reported) == 6
    assert len({round(row["jaccard"], 9) for row in per_image}) > 1, "test setup: the images should score apart"
    for image, row in reported.items():
        for name in scoring.SEGMENTATION_METRICS:
            assert row[name] == pytest.approx(evaluated[image][name], abs=1e-12), (image, name)
        assert row["detections"] == evaluated[image]["detections"]
        assert row["AP50"] == pytest.approx(evaluated[image]["ap50"], abs=1e-6)  # evaluate rounds to 6 digits
    for name in scoring.SEGMENTATION_METRICS:
        assert summary["segmentation"][name] == pytest.approx(metrics["segmentation"][name], abs=1e-12), name
    for name in ("mAP50", "mAP"):
        assert summary["detection"][name] == pytest.approx(metrics["detection"][name], abs=1e-6), name


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


# --------------------------------------------------------------------------- figures

def test_thumbnail_caps_the_longer_side():
    image = np.zeros((600, 300, 3), np.uint8)
    mask = np.zeros((600, 300), bool)
    mask[:300] = True
    assert report_figures.thumbnail(image, side=100).shape == (100, 50, 3)
    small = report_figures.thumbnail(mask, side=100, is_mask=True)
    assert small.dtype == bool and small.shape == (100, 50) and small[:50].all() and not small[50:].any()
    assert report_figures.thumbnail(image[:50, :50], side=100).shape == (50, 50, 3)
