"""lesions.py --mode export: the SavedModel, loaded by plain TensorFlow, against detect() on the same weights.

One tiny inference model with fixed random weights (no training: the
equivalence needs detections, not good ones; its foreground scores are all
about 0.8-0.9) is saved as a run, exported once per module through the CLI
and loaded in a fresh interpreter that cannot import mrcnn or skinlesion.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lesions

# Keras's save_weights converts variables with np.array(copy=False) (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINY = dict(IMAGE_MAX_DIM=64, IMAGE_MIN_DIM=64, RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TOP_DOWN_PYRAMID_SIZE=32,
            FPN_CLASSIF_FC_LAYERS_SIZE=64, POST_NMS_ROIS_INFERENCE=32, PRE_NMS_LIMIT=200, MASK_HEAD_CHANNELS=32,
            COMPUTE_DTYPE="float32")
# (H, W): 50 x 64 is molded without resizing, 100 x 128 shrinks to 50 x 64 (area resize by an
# exact factor, where TF's and OpenCV's area resize agree to the bit; at other factors a pixel
# can differ by one grey level, README "Export for deployment"), 30 x 41 is enlarged to 47 x 64
# (bilinear, bit-exact at any factor).
SIZES = ((50, 64), (100, 128), (30, 41))

# Loaders run in `python -I` from a folder outside the repository; mrcnn is
# installed in the venv (editable), so importing it is blocked outright.
BLOCK_PROJECT = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("mrcnn", "skinlesion", "lesions"):
                raise ImportError(f"{name} must not be needed to run the export")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import tensorflow as tf
    export_dir, inputs, output = sys.argv[1:4]
""")
LOADER = BLOCK_PROJECT + textwrap.dedent("""
    data = np.load(inputs)
    loaded = tf.saved_model.load(export_dir)
    serving = loaded.signatures["serving_default"]
    results = {}
    for key, threshold in json.loads(str(data["calls"])):
        images = tf.constant(data[key])
        out = loaded.serve(images) if threshold is None else serving(
            images=images, min_confidence=tf.constant(threshold, tf.float32))
        for name, value in out.items():
            results[f"{key}|{threshold}|{name}"] = value.numpy()
    results["sys_path"] = np.array(json.dumps(sys.path))
    np.savez(output, **results)
""")


def tiny_config(**extra):
    from skinlesion import LesionConfig
    return LesionConfig(classes="isic2017", IMAGES_PER_GPU=1, GPU_COUNT=1, **TINY, **extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Run folder, export folder, images, detect() references and the loaded export's outputs."""
    import keras
    from mrcnn.model import MaskRCNN
    from skinlesion import synthetic
    root = tmp_path_factory.mktemp("export")
    run = root / "logs" / "lesion20260101T120000"
    run.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    config = tiny_config()
    model = MaskRCNN("inference", config, str(root / "logs"), graph_min_confidence=0.0)
    model.keras_model.save_weights(str(run / "mask_rcnn_lesion_0001.weights.h5"))
    (run / "config.json").write_text(config.to_json())
    images = {f"s{h}x{w}_{seed}": synthetic.generate(seed, size=(h, w))[0][None] for h, w in SIZES for seed in (5, 6)}
    images["batch"] = np.concatenate([images["s50x64_5"], images["s50x64_6"]])
    small = images["s50x64_5"]
    scores = np.sort(model.detect([small[0]])[0]["scores"])[::-1]
    gap = int(np.argmax(scores[:-1] - scores[1:]))
    middle = float((scores[gap] + scores[gap + 1]) / 2)  # keeps the gap + 1 best detections
    # The export's default threshold is the run's, here set at export time.
    out = root / "saved"
    assert lesions.main(["--mode", "export", "--weights", str(run), "--out", str(out), "--quiet",
                         "--config", f"DETECTION_MIN_CONFIDENCE={middle!r}"]) == 0
    calls = [("small", 0.0), ("small", None), ("small", 1.0)] + [(key, 0.0) for key in images]
    inputs = root / "inputs.npz"
    np.savez(inputs, small=small, calls=np.array(json.dumps(calls)), **images)
    script = root / "load_export.py"
    script.write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    log = open(root / "loader.log", "w")  # a file, not a pipe: nobody reads a pipe while the references build
    loader = subprocess.Popen([sys.executable, "-I", str(script), str(out), str(inputs), str(root / "outputs.npz")],
                              cwd=str(root), env=env, stdout=log, stderr=subprocess.STDOUT)
    # While the loader runs (mostly TensorFlow kernels), this process builds the references
    # (mostly single-threaded Python tracing): the two overlap on two cores.
    references = {key: model.detect([image[0]])[0] for key, image in images.items() if key != "batch"}
    for threshold in (middle, 1.0):
        # The Matterport way: the threshold built into the graph, as a user's own script does it.
        built, _ = MaskRCNN.from_run(str(run), type(config), graph_min_confidence=threshold, COMPUTE_DTYPE="float32")
        references[threshold] = built.detect([small[0]])[0]
    loader.wait(timeout=300)
    log.close()
    assert loader.returncode == 0, (root / "loader.log").read_text()[-3000:]
    outputs = dict(np.load(root / "outputs.npz"))
    return {"run": run, "out": out, "images": images, "small": small, "middle": middle, "outputs": outputs,
            "references": references, "expected_kept": gap + 1}


def served(exported, key, threshold, index=0):
    """One image's outputs from the loaded export: dict name -> array (batch index removed)."""
    outputs = exported["outputs"]
    return {name: outputs[f"{key}|{threshold}|{name}"][index]
            for name in ("num_detections", "boxes", "class_ids", "scores", "probs", "masks")}


def jaccard(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def assert_same(out, result, image_shape):
    """The export's outputs for one image equal a detect() result dict within the contract's tolerances."""
    n = int(out["num_detections"])
    assert n == len(result["scores"])
    np.testing.assert_array_equal(out["class_ids"][:n], result["class_ids"])
    assert np.abs(out["boxes"][:n] - result["rois"]).max(initial=0) <= 1
    # The export's graph is compiled apart from detect()'s, so float rounding differs in the last
    # bits; on this random-weight model that can swap two near-tied proposals behind one
    # detection (same rounded box, a probability 1.5e-3 apart, measured on an Intel Xeon with
    # oneDNN on and with Eigen). So: every detection within 5e-3, all but one within 1e-4.
    for name, ours, theirs in (("scores", out["scores"][:n], result["scores"]),
                               ("probs", out["probs"][:n], result["probs"])):
        gap = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)).reshape(n, -1).max(axis=1,
                                                                                                      initial=0)
        assert gap.max(initial=0) <= 5e-3, (name, gap)
        assert (gap > 1e-4).sum() <= 1, (name, gap)
    assert out["masks"].shape[1:] == tuple(image_shape[:2]) and out["masks"].dtype == np.uint8
    assert set(np.unique(out["masks"])) <= {0, 1}
    assert jaccard(out["masks"][:n].any(axis=0), result["masks"].any(axis=-1)) >= 0.99
    # Padding past num_detections is zero.
    assert not out["scores"][n:].any() and not out["class_ids"][n:].any() and not out["masks"][n:].any()


def test_export_folder_has_the_model_and_its_files(exported):
    out = exported["out"]
    for name in ("saved_model.pb", "variables", "config.json", "class_names.json", "README.txt", "export.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "class_names.json").read_text()) == ["BG", "melanoma", "seborrheic_keratosis", "nevus"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["IMAGE_MAX_DIM"] == 64 and saved["COMPUTE_DTYPE"] == "float32"
    assert "saved_model_cli show" in (out / "README.txt").read_text()


def test_loaded_without_the_project(exported):
    paths = json.loads(str(exported["outputs"]["sys_path"]))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The interpreter's own folders may live under the checkout (make test's .venv/); the
    # project's source folders must not be on the path.
    ours = [p for p in paths if os.path.abspath(p or ".").startswith(root)
            and not os.path.abspath(p).startswith(os.path.abspath(sys.prefix))]
    assert not ours


@pytest.mark.parametrize("size", SIZES)
def test_export_equals_detect_on_two_sizes(exported, size):
    for seed in (5, 6):
        key = f"s{size[0]}x{size[1]}_{seed}"
        image = exported["images"][key][0]
        out = served(exported, key, 0.0)
        assert_same(out, exported["references"][key], image.shape)
        assert out["masks"].shape[1:] == size


def test_a_batch_gives_each_image_its_detections(exported):
    # A batch of two runs the graph's convolutions on two images at once, whose float
    # rounding differs from one image at a time (detect() with IMAGES_PER_GPU=2 too):
    # the same detections, scores within 1e-2 on this random-weight model. Boxes within a pixel,
    # except slivers: proposals clipped to the window's edge to 1-3 px, whose ROIAlign samples
    # all fall on one line, so several of them score alike to 1e-6 and the batch's rounding
    # can keep another one (seen on an AMD EPYC Zen 4 with oneDNN: [0, 0, 3, 5] alone, [0, 2,
    # 1, 10] batched, scores 0.8212521 / 0.8212525). Those are compared by class and score.
    for index in range(2):
        alone = served(exported, f"s50x64_{5 + index}", 0.0)
        batched = served(exported, "batch", 0.0, index)
        n = int(alone["num_detections"])
        assert int(batched["num_detections"]) == n
        np.testing.assert_array_equal(batched["class_ids"], alone["class_ids"])
        np.testing.assert_allclose(batched["scores"], alone["scores"], atol=1e-2)
        boxes_a, boxes_b = alone["boxes"][:n], batched["boxes"][:n]
        sides = np.minimum(boxes_a[:, 2:] - boxes_a[:, :2], boxes_b[:, 2:] - boxes_b[:, :2]).min(axis=1)
        real = sides >= 4
        assert real.sum() >= max(1, n // 2), (boxes_a, boxes_b)  # mostly real boxes: the check means something
        assert np.abs(boxes_b[real] - boxes_a[real]).max() <= 1


def test_min_confidence_at_call_time(exported):
    image = exported["small"][0]
    everything = served(exported, "small", 0.0)
    default = served(exported, "small", None)  # the run's DETECTION_MIN_CONFIDENCE: the middle one
    assert json.loads((exported["out"] / "export.json").read_text())["default_min_confidence"] == exported["middle"]
    assert int(default["num_detections"]) == exported["expected_kept"] < int(everything["num_detections"])
    assert_same(default, exported["references"][exported["middle"]], image.shape)


def test_fallback_when_nothing_passes_matches_the_graph_fallback(exported):
    image = exported["small"][0]
    out = served(exported, "small", 1.0)
    assert int(out["num_detections"]) == 1 and out["scores"][0] < 1.0
    assert_same(out, exported["references"][1.0], image.shape)


def test_missing_run_fails_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    assert lesions.main(["--mode", "export", "--weights", str(missing), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("broken", ["mask_rcnn_lesion_0001.weights.h5", "config.json"])
def test_corrupt_run_fails_naming_the_file(exported, tmp_path, capsys, broken):
    run = tmp_path / "lesion20260101T130000"
    run.mkdir()
    for name in ("mask_rcnn_lesion_0001.weights.h5", "config.json"):
        (run / name).write_bytes((exported["run"] / name).read_bytes())
    (run / broken).write_bytes(b"\x89HDF\r\n truncated" if broken.endswith(".h5") else b"{not json")
    assert lesions.main(["--mode", "export", "--weights", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(run / broken) in err, err
    assert not (tmp_path / "o" / "saved_model.pb").exists()


def test_square_geometry_and_shades_of_grey_match_numpy():
    import tensorflow as tf
    from mrcnn.images import resize_image, shades_of_grey
    from mrcnn.serving import resize_uint8, shades_of_grey_graph, square_geometry
    rng = np.random.default_rng(0)
    for h, w in ((50, 64), (96, 130), (30, 41), (65, 64), (128, 96), (3, 200), (7, 5), (17, 23)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        molded, window, scale, _, _ = resize_image(image, min_dim=64, max_dim=64, mode="square")
        tf_scale, new_h, new_w, tf_window = square_geometry(tf.constant(h), tf.constant(w), 64, 64, 0)
        assert tuple(tf_window.numpy()) == tuple(window) and abs(float(tf_scale) - scale) < 1e-12, (h, w)
        # Bit-exact: no resize, enlarging (cv2's fixed-point bilinear), an exact factor of 2 (area means
        # rounded half up); other shrinks may differ by one grey level in a few pixels.
        resized = resize_uint8(tf.constant(image[None]), new_h, new_w)[0].numpy()
        y1, x1, y2, x2 = window
        difference = np.abs(resized - molded[y1:y2, x1:x2])
        assert difference.max() <= (0 if scale >= 1 or (h, w) == (128, 96) else 1), (h, w)
        assert (difference > 0).mean() < 0.01, (h, w)
    image = rng.integers(0, 256, (2, 40, 48, 3)).astype(np.float32)
    image[1, :, :, 2] = 0  # a channel without light: left unchanged
    graph = shades_of_grey_graph(tf.constant(image)).numpy()
    for i in range(2):
        np.testing.assert_allclose(graph[i], shades_of_grey(image[i]), atol=1e-3)


class _TinyServing:
    """Stands in for a ServingModule in convert_tflite: the real graph takes about a minute to convert."""

    def __init__(self, body):
        self.body = body

    def function(self, image_size, batch):
        return tf_function(self.body, [batch, *image_size, 3])


def tf_function(body, shape):
    import tensorflow as tf
    return tf.function(lambda images, min_confidence: {"out": body(images) * min_confidence},
                       input_signature=[tf.TensorSpec(shape, tf.uint8), tf.TensorSpec([], tf.float32)])


def test_tflite_lists_flex_ops_or_names_the_op_it_cannot_convert(tmp_path):
    import tensorflow as tf
    from mrcnn.export import convert_tflite

    def roi_align(images):  # CropAndResize (the graph's ROI Align) is no TFLite builtin: a flex op
        return tf.image.crop_and_resize(tf.cast(images, tf.float32), [[0.0, 0.0, 0.5, 0.5]], [0], [3, 3])

    path, flex_ops = convert_tflite(_TinyServing(roi_align), str(tmp_path), (8, 8))
    assert os.path.getsize(path) > 0 and "CropAndResize" in flex_ops
    with pytest.raises(RuntimeError, match=r"cannot convert op ResizeArea.*SavedModel in"):
        convert_tflite(_TinyServing(lambda images: tf.image.resize(images, [4, 4], method="area")),
                       str(tmp_path), (8, 8))
