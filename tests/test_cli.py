"""End-to-end tests of lesions.py: train (two stages, resume), predict, evaluate, errors.

One tiny synthetic run (64 px, a few steps) is trained once per module and
reused by the predict / evaluate / resume tests.
"""
import csv
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import lesions

TINY = ["--config", "IMAGE_MAX_DIM=64", "--config", "IMAGE_MIN_DIM=64",
        "--config", "RPN_ANCHOR_SCALES=(8,16,32,64,128)", "--config", "TOP_DOWN_PYRAMID_SIZE=32",
        "--config", "FPN_CLASSIF_FC_LAYERS_SIZE=64", "--config", "STEPS_PER_EPOCH=2",
        "--config", "VALIDATION_STEPS=1", "--config", "POST_NMS_ROIS_TRAINING=64",
        "--config", "POST_NMS_ROIS_INFERENCE=32", "--config", "PRE_NMS_LIMIT=200",
        "--config", "TRAIN_ROIS_PER_IMAGE=16", "--config", "WORKERS=1", "--config", "MASK_HEAD_CHANNELS=32"]
DATASET = ["--dataset", "synthetic:12", "--classes", "isic2017"]


def run(*argv):
    return lesions.main([str(a) for a in argv] + ["--quiet"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    status = run("--mode", "train", "--logs", logs, "--epochs-heads", 1, "--epochs-all", 1, *DATASET, *TINY)
    assert status == 0
    return logs


def checkpoints(logs):
    found = []
    for root, _, files in os.walk(logs):
        found += [os.path.join(root, f) for f in files if re.match(r"mask_rcnn_lesion_\d{4}\.weights\.h5$", f)]
    return sorted(found)


def test_train_writes_run_directory(trained):
    files = checkpoints(trained)
    assert [os.path.basename(f) for f in files] == ["mask_rcnn_lesion_0001.weights.h5",
                                                    "mask_rcnn_lesion_0002.weights.h5"]
    run_dir = os.path.dirname(files[-1])
    assert re.match(r"lesion\d{8}T\d{6}$", os.path.basename(run_dir))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["CLASS_SCHEME"] == "isic2017" and config["NUM_CLASSES"] == 4
    assert config["IMAGE_MAX_DIM"] == 64 and config["MASK_HEAD_CHANNELS"] == 32  # predict rebuilds this head
    rows = list(csv.DictReader(open(os.path.join(run_dir, "losses.csv"))))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for name in ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
                 "mrcnn_mask_loss", "val_loss"):
        assert all(np.isfinite(float(r[name])) for r in rows), name
    assert any(f.startswith("events.") for _, _, fs in os.walk(run_dir) for f in fs), "no TensorBoard events"
    # Stage 2 runs at LEARNING_RATE / 10 (both still in LesionConfig's 100-step warm-up: 2 and 2 steps).
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], [0.001 * 2 / 100, 0.0001 * 2 / 100],
                               rtol=1e-4)
    assert not [f for f in os.listdir(run_dir) if f.startswith(".tmp_")], "temporary checkpoint left behind"


def test_resume_continues_epoch_count(trained, tmp_path):
    status = run("--mode", "train", "--logs", trained, "--weights", "last", "--epochs-heads", 1,
                 "--epochs-all", 2, *DATASET, *TINY)
    assert status == 0
    names = [os.path.basename(f) for f in checkpoints(trained)]
    assert names[-1] == "mask_rcnn_lesion_0003.weights.h5"
    assert len({os.path.dirname(f) for f in checkpoints(trained)}) == 1, "resume must stay in the same run"


def test_cosine_decay_from_scratch_trains_in_one_stage_down_to_one_percent(tmp_path, caplog):
    caplog.set_level("INFO")
    status = run("--mode", "train", "--logs", tmp_path, "--epochs-heads", 2, "--epochs-all", 1, *DATASET, *TINY,
                 "--config", "LEARNING_RATE_DECAY=cosine", "--config", "LEARNING_RATE_WARMUP=0")
    assert status == 0
    files = checkpoints(tmp_path)
    assert [os.path.basename(f) for f in files] == [f"mask_rcnn_lesion_000{i}.weights.h5" for i in (1, 2, 3)]
    assert "one stage up to epoch 3" in caplog.text and "stage 2" not in caplog.text
    rows = list(csv.DictReader(open(os.path.join(os.path.dirname(files[-1]), "losses.csv"))))
    # 6 steps in one call: progress 1/3, 2/3, 1 at the epoch ends.
    expected = [0.001 * (0.01 + 0.99 * (1 + np.cos(np.pi * p)) / 2) for p in (1 / 3, 2 / 3, 1)]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected, rtol=1e-4)


@pytest.fixture(scope="module")
def predicted(trained, tmp_path_factory):
    from skinlesion import synthetic
    images = tmp_path_factory.mktemp("images")
    for i in range(3):
        image, _, _ = synthetic.generate(1000 + i, size=(90 + 10 * i, 120))
        Image.fromarray(image).save(images / f"ISIC_00000{i:02d}.jpg")
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    Image.fromarray(np.zeros((40, 50, 4), np.uint8)).save(images / "rgba.png")
    out = tmp_path_factory.mktemp("pred")
    status = run("--mode", "predict", "--image", images, "--logs", trained, "--out", out)
    assert status == 0
    return images, out


def test_predict_contract(predicted):
    images, out = predicted
    payload = json.load(open(out / "predictions.json"))
    names = sorted(r["image"] for r in payload["images"])
    assert names == ["ISIC_0000000.jpg", "ISIC_0000001.jpg", "ISIC_0000002.jpg", "rgba.png"]
    assert [os.path.basename(s["file"]) for s in payload["skipped"]] == ["corrupt.jpg"]
    for record in payload["images"]:
        stem = os.path.splitext(record["image"])[0]
        mask = Image.open(out / "masks" / f"{stem}_segmentation.png")
        original = Image.open(images / record["image"])
        assert mask.mode == "L" and mask.size == original.size == (record["width"], record["height"])
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert (out / "overlays" / f"{stem}.png").exists()
        for det in record["detections"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]
            assert det["class"] in ("melanoma", "seborrheic_keratosis", "nevus")
            assert abs(sum(det["probabilities"].values()) - 1) < 1e-3
        if record["detections"]:
            assert np.asarray(mask).any(), "one lesion per image: a detection must give a mask"
    rows = list(csv.reader(open(out / "probabilities.csv")))
    assert rows[0] == ["image", "melanoma", "seborrheic_keratosis", "nevus"]
    assert len(rows) == 5
    for row in rows[1:]:
        assert abs(sum(float(v) for v in row[1:]) - 1) < 1e-3


def test_evaluate_with_model(trained, tmp_path):
    out = tmp_path / "eval"
    status = run("--mode", "evaluate", "--logs", trained, "--out", out, "--subset", "test", *DATASET)
    assert status == 0
    metrics = json.load(open(out / "metrics.json"))
    for key in ("jaccard", "threshold_jaccard", "dice", "sensitivity", "specificity", "accuracy"):
        assert 0.0 <= metrics["segmentation"][key] <= 1.0
    assert set(metrics["detection"]) >= {"mAP50", "mAP"}
    assert "balanced_accuracy" in metrics["classification"]
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == metrics["images"] > 0
    assert (out / "predictions.json").exists() and (out / "masks").is_dir()


LIBRARY_EVALUATE = """
import json, sys
from skinlesion import LesionDataset, runs
from skinlesion.evaluation import evaluate_model
model, config, checkpoint = runs.load_model(sys.argv[1])
dataset = LesionDataset()
dataset.load("synthetic:12", "test", classes=config.CLASS_SCHEME, size=(64, 64))
dataset.prepare()
metrics, _ = evaluate_model(model, config, dataset, sys.argv[2], progress=False)
assert "lesions" not in sys.modules
print(json.dumps({"checkpoint": checkpoint, "metrics": metrics}, default=float))
"""


def test_library_reload_of_a_run_reproduces_cli_evaluate(trained, tmp_path):
    """skinlesion.runs.load_model + evaluate_model, without lesions.py, give evaluate's numbers."""
    import subprocess
    import sys
    cli = tmp_path / "cli"
    assert run("--mode", "evaluate", "--logs", trained, "--out", cli, "--subset", "test", *DATASET) == 0
    expected = json.load(open(cli / "metrics.json"))
    run_dir = os.path.dirname(checkpoints(trained)[-1])
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", LIBRARY_EVALUATE, run_dir, str(tmp_path / "lib")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["checkpoint"] == expected["weights"]
    for key, value in expected["segmentation"].items():
        assert got["metrics"]["segmentation"][key] == pytest.approx(value, abs=1e-9), key
    assert got["metrics"]["detection"]["mAP"] == pytest.approx(expected["detection"]["mAP"], abs=1e-9)


def test_evaluate_mask_folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    square = np.zeros((20, 20), np.uint8)
    square[5:15, 5:15] = 255
    shifted = np.roll(square, 5, axis=1)
    Image.fromarray(square).save(truth / "ISIC_0000001_segmentation.png")
    Image.fromarray(shifted).save(pred / "ISIC_0000001.png")
    Image.fromarray(square).save(truth / "IMD002_lesion.png")
    Image.fromarray(square).save(pred / "IMD002_segmentation.png")
    status = run("--mode", "evaluate", "--truth", truth, "--predictions", pred, "--out", tmp_path / "out")
    assert status == 0
    metrics = json.load(open(tmp_path / "out" / "metrics.json"))
    # Image 1: J = 50/150; image 2: identical masks.
    assert metrics["segmentation"]["jaccard"] == pytest.approx((50 / 150 + 1) / 2)
    assert metrics["images"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--mode", "dance"], "not a mode"),
    (["--mode", "train", "--dataset", "/no/such/folder"], "no such folder"),
    (["--mode", "train", "--classes", "mushrooms"], "mushrooms"),
    (["--mode", "train", "--config", "IMAGE_MAX_DIMM=64"], "IMAGE_MAX_DIM"),
    (["--mode", "train", "--config", "IMAGE_MAX_DIM=abc"], "integer"),
    (["--mode", "predict", "--image", "/no/such/image.jpg"], "no image file"),
])
def test_clear_errors(argv, message, capsys, tmp_path):
    status = run(*argv, "--logs", tmp_path)
    assert status == 2
    assert message in capsys.readouterr().err


def test_no_checkpoint_error(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert run("--mode", "predict", "--image", image, "--logs", tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert "no checkpoint found" in err and "--mode train" in err


def test_config_values_are_literals_not_code():
    from mrcnn.config import ConfigError
    from skinlesion import LesionConfig
    with pytest.raises(ConfigError, match="LEARNING_RATE"):
        LesionConfig.parse_overrides(["LEARNING_RATE=__import__('os').getcwd()"])
    assert LesionConfig.parse_overrides(["LEARNING_RATE=1"]) == {"LEARNING_RATE": 1.0}
    assert LesionConfig.parse_overrides(["BACKBONE=resnet101"]) == {"BACKBONE": "resnet101"}
    with pytest.raises(ConfigError, match="--classes"):
        LesionConfig.parse_overrides(["NUM_CLASSES=3"])
    with pytest.raises(ConfigError, match="did you mean IMAGE_MAX_DIM"):
        LesionConfig.parse_overrides(["IMAGE_MAX_DIMS=512"])
    config = LesionConfig.from_overrides(["IMAGE_MAX_DIM=128", "IMAGE_MIN_DIM=128"], classes="ph2")
    assert config.IMAGE_MAX_DIM == 128 and config.NUM_CLASSES == 4
    assert "ARCHITECTURE_FIELDS" not in config.to_dict(), "the field set is not itself a field"


def test_split_without_validation_and_time_budget(tmp_path):
    """A folder dataset split train/test only trains without validation; --minutes stops the run."""
    from skinlesion import synthetic
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    for i in range(8):
        image, mask, _ = synthetic.generate((5, i), size=(64, 64))
        Image.fromarray(image).save(tmp_path / "data" / "images" / f"im{i}.jpg")
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(tmp_path / "data" / "masks" / f"im{i}.png")
    logs = tmp_path / "logs"
    status = run("--mode", "train", "--logs", logs, "--dataset", tmp_path / "data", "--split", "0.75,0,0.25",
                 "--epochs-heads", 3, "--epochs-all", 2, "--minutes", 0.0001, *TINY)
    assert status == 0
    files = checkpoints(logs)
    # The budget runs out during the first step: epoch 1 is cut short and saved, stage 2 is skipped.
    assert [os.path.basename(f) for f in files] == ["mask_rcnn_lesion_0001.weights.h5"]
    rows = list(csv.DictReader(open(os.path.join(os.path.dirname(files[0]), "losses.csv"))))
    assert len(rows) == 1 and rows[0].get("val_loss", "NA") == "NA", "no validation subset, no val_loss"
    assert run("--mode", "train", "--logs", logs, "--dataset", tmp_path / "data", "--split", "0.5,0.5",
               *TINY) == 2
