"""ISIC 2018 Task 2 end to end: train a tiny Mask R-CNN on a synthetic Task 2 tree, evaluate, predict.

The model is trained for two steps, so the scores are not the point: the
test checks that evaluate scores Task 2 and that predict writes the
challenge's files, which score to the same numbers as evaluate's.
"""
import json
import os

import pytest

import lesions
from skinlesion import scoring
from skinlesion.synthetic import write_task2_tree

TINY = ["--config", "IMAGE_MAX_DIM=64", "--config", "IMAGE_MIN_DIM=64",
        "--config", "RPN_ANCHOR_SCALES=(8,16,32,64,128)", "--config", "TOP_DOWN_PYRAMID_SIZE=32",
        "--config", "FPN_CLASSIF_FC_LAYERS_SIZE=64", "--config", "STEPS_PER_EPOCH=2",
        "--config", "VALIDATION_STEPS=1", "--config", "POST_NMS_ROIS_TRAINING=64",
        "--config", "POST_NMS_ROIS_INFERENCE=32", "--config", "PRE_NMS_LIMIT=200",
        "--config", "TRAIN_ROIS_PER_IMAGE=16", "--config", "WORKERS=1", "--config", "MASK_HEAD_CHANNELS=32",
        "--config", "DETECTION_MIN_CONFIDENCE=0.0"]


def run(*argv):
    return lesions.main([str(a) for a in argv] + ["--quiet"])


@pytest.fixture(scope="module")
def task2_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("task2")
    data = root / "data"
    write_task2_tree(str(data), 8, size=(64, 64), seed=3)
    logs = root / "logs"
    assert run("--mode", "train", "--logs", logs, "--dataset", data, "--classes", "isic2018_attributes",
               "--split", "0.6,0.2,0.2", "--epochs-heads", 1, "--epochs-all", 0, *TINY) == 0
    return root, data, logs


def test_evaluate_scores_task2_and_predict_writes_its_files(task2_run):
    root, data, logs = task2_run
    out = root / "eval"
    assert run("--mode", "evaluate", "--logs", logs, "--dataset", data, "--classes", "isic2018_attributes",
               "--split", "0.6,0.2,0.2", "--subset", "test", "--out", out, *TINY) == 0
    metrics = json.load(open(out / "metrics.json"))
    task2 = metrics["attributes"]
    assert task2["images"] == metrics["images"] > 0
    assert set(task2["jaccard"]) == {"globules", "milia_like_cyst", "negative_network", "pigment_network",
                                     "streaks"}
    assert all(v is None or 0 <= v <= 1 for v in task2["jaccard"].values())

    pred = root / "pred"
    images = data / "ISIC2018_Task1-2_Training_Input"
    assert run("--mode", "predict", "--logs", logs, "--image", images, "--out", pred, *TINY) == 0
    written = sorted(os.listdir(pred / "attributes"))
    assert len(written) == 8 * 5 and written[0].endswith("_attribute_globules.png")
    # The files predict wrote score, against the ground-truth folder, as the official scorer's layout wants.
    rescored = scoring.task2_jaccard((str(data / "ISIC2018_Task2_Training_GroundTruth_v3"), str(pred / "attributes")))
    assert rescored["images"] == 8 and rescored["mean_jaccard"] is not None
