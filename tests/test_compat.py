"""A Matterport-style user script runs unchanged (apart from augmentation) on Keras 3.

One tiny model is trained once for the module (heads for epoch 1, all layers
for epoch 2) and every test reads what that run left behind. The multi-GPU
check runs in a subprocess (logical CPU devices must be configured before
TensorFlow initializes) that starts with the module, so it overlaps the rest.

Grappler's graph optimizations are switched off while this module runs (and
restored after): they are semantics-preserving, but optimizing the
all-layers training graph costs ~35 s of the test budget on CPU.
"""
import csv
import glob
import os
import re
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# --- the user's script: Matterport imports, unchanged --------------------------------------
from mrcnn.config import Config  # noqa: E402
from mrcnn import model as modellib, utils, visualize  # noqa: E402

from mrcnn_shapes import make_shapes  # noqa: E402  (only to draw the images onto disk)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
MULTIGPU_TIMEOUT = 240

# Keras 3.12 saving TF 2.21 variables (keras/src/backend/tensorflow/core.py:171) warns once per
# variable on every checkpoint; it is Keras-internal and drowns the test report.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


class ShapesConfig(Config):
    """Written as a Matterport user would (train_shapes.ipynb), sized for a test."""
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 2
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    WORKERS = 1
    VERBOSE = 0


class InferenceConfig(ShapesConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.0


class ShapesDataset(utils.Dataset):
    """Balloon-sample style: images are files on disk, only load_mask is overridden."""

    def load_shapes(self, folder, source):
        self.add_class("shapes", 1, "square")
        self.add_class("shapes", 2, "circle")
        for image_id in source.image_ids:
            path = os.path.join(folder, f"{image_id:03d}.png")
            Image.fromarray(source.load_image(image_id)).save(path)
            mask, class_ids = source.load_mask(image_id)
            np.savez(path + ".npz", mask=mask, class_ids=class_ids)
            self.add_image("shapes", image_id=image_id, path=path, annotation=path + ".npz")

    def load_mask(self, image_id):
        with np.load(self.image_info[image_id]["annotation"]) as f:
            return f["mask"], f["class_ids"].astype(np.int32)


MULTIGPU_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    tf.config.optimizer.set_experimental_options({{"disable_meta_optimizer": True}})
    tf.config.threading.set_intra_op_parallelism_threads(1)  # leave a core to the main test process
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    sys.path[:0] = [{repo!r}, {tests!r}]
    from mrcnn import model as modellib
    from mrcnn_shapes import ShapesConfig, make_shapes

    class MultiConfig(ShapesConfig):
        GPU_COUNT = 2
        IMAGES_PER_GPU = 1
        STEPS_PER_EPOCH = 2
        VALIDATION_STEPS = 0

    model = modellib.MaskRCNN(mode="training", config=MultiConfig(), model_dir={model_dir!r})
    assert model.strategy is not None, "GPU_COUNT=2 should train under a MirroredStrategy"
    print("REPLICAS", model.strategy.num_replicas_in_sync, flush=True)
    dataset = make_shapes(4, seed=5)
    model.train(dataset, None, learning_rate=0.01, epochs=1, layers="heads")
    print("CHECKPOINT", model.find_last(), flush=True)
""")


# ------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module", autouse=True)
def _fast_graphs():
    import tensorflow as tf
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("compat")


@pytest.fixture(scope="module")
def multigpu_process(workdir):
    """Start the MirroredStrategy run in the background; tests wait for it."""
    model_dir = str(workdir / "multigpu_logs")
    script = MULTIGPU_SCRIPT.format(repo=REPO_DIR, tests=TESTS_DIR, model_dir=model_dir)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(workdir))
    yield proc, model_dir
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def _start_multigpu_early(multigpu_process):
    return multigpu_process


@pytest.fixture(scope="module")
def dataset(workdir):
    folder = workdir / "images"
    folder.mkdir()
    source = make_shapes(6, height=48, width=80, seed=11)  # not square: resize and padding matter
    ds = ShapesDataset()
    ds.load_shapes(str(folder), source)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def trained(workdir, dataset):
    """The user's training calls, with the state they leave behind."""
    import keras
    keras.utils.set_random_seed(0)
    model_dir = str(workdir / "logs")
    config = ShapesConfig()
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=model_dir)
    model.train(dataset, dataset, learning_rate=0.01, epochs=1, layers="heads",
                augmentation=A.HorizontalFlip(p=0.5))
    epoch_after_heads = model.epoch
    model.train(dataset, dataset, learning_rate=0.005, epochs=2, layers="all")
    return {"model": model, "config": config, "model_dir": model_dir, "log_dir": model.log_dir,
            "epoch_after_heads": epoch_after_heads, "last": model.find_last(),
            "csv_rows": _csv_rows(model.log_dir),
            "files": sorted(os.listdir(model.log_dir))}


def _csv_rows(log_dir):
    with open(os.path.join(log_dir, "losses.csv")) as f:
        return list(csv.DictReader(f))


def _checkpoint(log_dir, epoch):
    return os.path.join(log_dir, f"mask_rcnn_shapes_{epoch:04d}.weights.h5")


@pytest.fixture(scope="module")
def inference_models(trained):
    """Two inference models from the epoch-2 checkpoint: one loaded by name, one strictly (by_name=False).

    The strict load of a training checkpoint into the inference graph must
    work (same layers) and give the same detections (test below).
    """
    path = _checkpoint(trained["log_dir"], 2)
    models = []
    for by_name in (True, False):
        model = modellib.MaskRCNN(mode="inference", config=InferenceConfig(), model_dir=trained["model_dir"])
        report = model.load_weights(path, by_name=by_name)
        assert not report["missing_in_file"]
        models.append(model)
    return models


@pytest.fixture(scope="module")
def detections(inference_models, dataset):
    """detect() on one 48x80 image: twice on one model, once on the other, once forced non-empty.

    A two-epoch model may find nothing, so the last run biases the class
    logits towards "square" (restored afterwards) to get real detections.
    """
    image = dataset.load_image(0)
    model = inference_models[0]
    first = model.detect([image], verbose=0)
    second = model.detect([image], verbose=0)
    other_model = inference_models[1].detect([image], verbose=0)
    bias = model.keras_model.get_layer("mrcnn_class_logits").bias
    saved = bias.numpy()
    try:
        bias.assign(saved + np.array([-20.0, 20.0, 0.0], np.float32))
        forced = model.detect([image], verbose=0)
    finally:
        bias.assign(saved)
    return image, first, second, other_model, forced


# --------------------------------------------------------------------------- tests

def test_training_writes_matterport_layout(trained):
    log_dir = trained["log_dir"]
    assert os.path.dirname(log_dir) == trained["model_dir"]
    assert re.fullmatch(r"shapes\d{8}T\d{4,6}", os.path.basename(log_dir)), log_dir
    assert trained["epoch_after_heads"] == 1 and trained["model"].epoch == 2, "epochs are cumulative"
    for epoch in (1, 2):
        assert f"mask_rcnn_shapes_{epoch:04d}.weights.h5" in trained["files"]
    assert not any(f.startswith(".tmp_") for f in trained["files"])
    assert "config.json" in trained["files"]
    assert len(trained["csv_rows"]) == 2, "losses.csv: one row per epoch across both train() calls"
    assert [int(r["epoch"]) for r in trained["csv_rows"]] == [0, 1]
    for row in trained["csv_rows"]:
        for name in ("loss", "rpn_class_loss", "mrcnn_mask_loss", "val_loss"):
            assert np.isfinite(float(row[name])), f"{name} not finite in losses.csv: {row}"
    events = glob.glob(os.path.join(log_dir, "**", "events.out.tfevents*"), recursive=True)
    assert events, "TensorBoard event files expected under the run directory"
    assert trained["last"] == _checkpoint(log_dir, 2), "find_last() returns the newest checkpoint"


def test_config_json_round_trips(trained):
    import json
    with open(os.path.join(trained["log_dir"], "config.json")) as f:
        saved = json.load(f)
    assert saved["NAME"] == "shapes" and saved["NUM_CLASSES"] == 3 and saved["BATCH_SIZE"] == 2
    assert saved["IMAGE_SHAPE"] == [64, 64, 3]


@pytest.mark.parametrize("which", ["as_trained", "forced"])
def test_detect_returns_consistent_matterport_dicts(detections, which):
    image, first, _, _, forced = detections
    results = first if which == "as_trained" else forced
    assert isinstance(results, list) and len(results) == 1
    r = results[0]
    assert set(r) >= {"rois", "class_ids", "scores", "masks", "probs"}
    n = r["rois"].shape[0]
    assert r["rois"].shape == (n, 4) and r["class_ids"].shape == (n,) and r["scores"].shape == (n,)
    assert r["masks"].shape == image.shape[:2] + (n,), "masks come back at the original image size"
    assert r["masks"].dtype == bool
    assert r["probs"].shape == (n, ShapesConfig.NUM_CLASSES)
    assert n <= InferenceConfig.DETECTION_MAX_INSTANCES
    if which == "forced":
        assert n > 0 and np.all(r["class_ids"] == 1)
    if n:
        np.testing.assert_allclose(r["probs"].sum(axis=1), 1.0, atol=1e-5)
        assert np.all(r["class_ids"] > 0)
        np.testing.assert_allclose(r["scores"], r["probs"][np.arange(n), r["class_ids"]], atol=1e-6)
        assert np.all(np.diff(r["scores"]) <= 1e-7), "detections are sorted by score"
        assert np.all(r["rois"][:, :2] >= 0) and np.all(r["rois"][:, 2] <= image.shape[0]) \
            and np.all(r["rois"][:, 3] <= image.shape[1])


def test_detect_is_deterministic_and_checkpoint_round_trips(detections):
    _, first, second, other_model, _ = detections
    for again, label in ((second, "second detect() call"), (other_model, "second model from the same file")):
        for key in ("rois", "class_ids", "scores", "masks", "probs"):
            np.testing.assert_array_equal(first[0][key], again[0][key], err_msg=f"{label}: {key} differs")


def test_inference_model_holds_the_trained_weights(trained, inference_models):
    """load_weights(by_name=True) across modes gives every shared layer the training values."""
    train_layers = {l.name: l for l in _leaf_layers(trained["model"].keras_model)}
    compared = 0
    for layer in _leaf_layers(inference_models[0].keras_model):
        source = train_layers.get(layer.name)
        if source is None or not layer.weights:
            continue
        for got, want in zip(layer.get_weights(), source.get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=f"layer {layer.name}")
        compared += 1
    assert compared > 100, f"only {compared} layers matched by name"
    for name in ("conv1", "fpn_c5p5", "rpn_conv_shared", "mrcnn_class_logits", "mrcnn_mask"):
        assert name in train_layers, f"Matterport layer name {name} missing"


def _leaf_layers(model):
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def test_matterport_helpers_resolve_and_work(trained, dataset, detections, workdir, capsys):
    config = trained["config"]
    image, meta, class_ids, boxes, masks = modellib.load_image_gt(dataset, config, 0, use_mini_mask=False)
    assert image.shape == (64, 64, 3) and masks.shape[:2] == (64, 64)
    modellib.log("image", image)
    assert "shape: (64, 64, 3)" in capsys.readouterr().out
    ap, precisions, recalls, overlaps = utils.compute_ap(boxes, class_ids, masks, boxes, class_ids,
                                                         np.ones(len(class_ids)), masks)
    assert ap == pytest.approx(1.0)
    resized, window, scale, padding, crop = utils.resize_image(dataset.load_image(0), min_dim=64, max_dim=64,
                                                               mode="square")
    assert resized.shape == (64, 64, 3) and window == (13, 0, 51, 64) and scale == pytest.approx(0.8)
    original, _, _, _, forced = detections
    r = forced[0]
    out = workdir / "x.png"
    visualize.display_instances(original, r["rois"], r["masks"], r["class_ids"], dataset.class_names,
                                r["scores"], path=out)
    assert out.exists() and out.stat().st_size > 1000


def test_run_graph_returns_outputs_and_intermediate_layers(dataset, inference_models):
    model = inference_models[0]
    image = dataset.load_image(0)
    values = model.run_graph([image], [("detections", "detections"), ("p2", "fpn_p2"), ("c2", "res2c_out")])
    assert values["detections"].shape == (1, InferenceConfig.DETECTION_MAX_INSTANCES, 6)
    assert values["p2"].shape == (1, 16, 16, ShapesConfig.TOP_DOWN_PYRAMID_SIZE)
    assert values["c2"].shape == (1, 16, 16, 256)
    single = model.run_graph([image], [("p2", "fpn_p2")])
    np.testing.assert_allclose(single["p2"], values["p2"], atol=1e-5)


def test_training_resumes_from_checkpoint_path(trained, dataset, detections, inference_models):
    # Depends on detections/inference_models so it runs after they read epoch 2's checkpoint.
    log_dir = trained["log_dir"]
    model = modellib.MaskRCNN(mode="training", config=ShapesConfig(), model_dir=trained["model_dir"])
    model.load_weights(_checkpoint(log_dir, 2), by_name=True)
    assert model.epoch == 2, "loading a checkpoint sets the epoch counter"
    assert model.log_dir == log_dir, "and continues in the same run directory"
    model.train(dataset, dataset, learning_rate=0.005, epochs=3, layers="heads")
    assert os.path.exists(_checkpoint(log_dir, 3))
    assert model.epoch == 3 and model.find_last() == _checkpoint(log_dir, 3)
    assert len(_csv_rows(log_dir)) == 3, "losses.csv is appended to, not overwritten"
    assert model.train(dataset, dataset, learning_rate=0.005, epochs=3, layers="heads") is None, \
        "train() up to an epoch already reached does nothing"


def test_multi_gpu_mirrored_strategy_on_logical_cpus(multigpu_process):
    proc, model_dir = multigpu_process
    try:
        stdout, stderr = proc.communicate(timeout=MULTIGPU_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"GPU_COUNT=2 training did not finish in {MULTIGPU_TIMEOUT} s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"GPU_COUNT=2 training failed:\n{stderr[-4000:]}"
    assert "REPLICAS 2" in stdout
    checkpoints = glob.glob(os.path.join(model_dir, "shapes*", "mask_rcnn_shapes_0001.weights.h5"))
    assert len(checkpoints) == 1, f"expected one epoch-1 checkpoint under {model_dir}; stdout:\n{stdout}"
    assert f"CHECKPOINT {checkpoints[0]}" in stdout
    with open(os.path.join(os.path.dirname(checkpoints[0]), "losses.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"])), rows
