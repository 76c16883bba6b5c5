"""Weight loading by layer name (Keras 2 HDF5 written by hand, Keras 3 .weights.h5) and downloads."""
import os
import urllib.error
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn import weights  # noqa: E402

# Keras 3.12's save_weights converts TF variables with np.array(), which NumPy 2 warns about
# once per variable (mrcnn.training.variables_to_numpy_quietly does the same in the library).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def build_model(num_classes=3):
    """Tiny functional model with Matterport-style names and a nested 'rpn_model'.

    Input [batch, 8, 8, 3] -> logits [batch, num_classes].
    """
    inner_input = keras.Input((8, 8, 4), name="rpn_input")
    inner_output = keras.layers.Conv2D(2, 3, padding="same", name="rpn_conv_shared")(inner_input)
    rpn_model = keras.Model(inner_input, inner_output, name="rpn_model")

    image = keras.Input((8, 8, 3), name="input_image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(image)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    x = rpn_model(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits")(x)
    return keras.Model(image, logits, name="tiny_mrcnn")


def keras2_arrays(num_classes=3, seed=0):
    """Arrays as a Keras 2 save of build_model would hold them: {layer group: [(weight name, array)]}.

    The nested model is one group whose weight names carry the inner layer's name.
    """
    rng = np.random.default_rng(seed)
    return {
        "conv1": [("conv1/kernel:0", rng.normal(size=(3, 3, 3, 4))), ("conv1/bias:0", rng.normal(size=4))],
        "bn_conv1": [("bn_conv1/gamma:0", rng.uniform(0.5, 1.5, 4)), ("bn_conv1/beta:0", rng.normal(size=4)),
                     ("bn_conv1/moving_mean:0", rng.normal(size=4)),
                     ("bn_conv1/moving_variance:0", rng.uniform(0.5, 1.5, 4))],
        "rpn_model": [("rpn_conv_shared/kernel:0", rng.normal(size=(3, 3, 4, 2))),
                      ("rpn_conv_shared/bias:0", rng.normal(size=2))],
        "mrcnn_class_logits": [("mrcnn_class_logits/kernel:0", rng.normal(size=(2, num_classes))),
                               ("mrcnn_class_logits/bias:0", rng.normal(size=num_classes))],
        "extra_layer_not_in_model": [("extra_layer_not_in_model/kernel:0", np.ones((2, 2)))],
    }


def write_keras2_h5(path, arrays, full_model=False):
    """Write arrays in the Keras 2 HDF5 weight layout (as Matterport's files are)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        root.attrs["layer_names"] = np.array([name.encode("utf8") for name in arrays])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.1.6"
        for layer_name, layer_weights in arrays.items():
            group = root.create_group(layer_name)
            group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in layer_weights])
            for weight_name, value in layer_weights:
                # The weight name contains a slash, so h5py nests it: conv1/conv1/kernel:0.
                group.create_dataset(weight_name, data=value.astype(np.float32))


@pytest.fixture(scope="module")
def keras2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("k2") / "matterport_style.h5"
    write_keras2_h5(path, keras2_arrays())
    return path


def layer_values(model, name):
    """Weights of a layer found anywhere in the model (nested included), as numpy."""
    leaves, _ = weights.flatten_layers(model)
    return [np.asarray(v.numpy()) for v in leaves[name].weights]


def test_keras2_file_layout_is_as_keras2_wrote_it(keras2_file):
    with h5py.File(keras2_file, "r") as f:
        assert "conv1/kernel:0" in f["conv1"]
        assert f["conv1"]["conv1"]["kernel:0"].shape == (3, 3, 3, 4)


def test_load_keras2_by_name_sets_every_layer_including_nested(keras2_file):
    model = build_model()
    report = weights.load_weights_by_name(model, keras2_file)
    expected = keras2_arrays()
    for name in ("conv1", "bn_conv1", "mrcnn_class_logits"):
        for got, (_, want) in zip(layer_values(model, name), expected[name]):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    for got, (_, want) in zip(layer_values(model, "rpn_conv_shared"), expected["rpn_model"]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert sorted(report["loaded"]) == ["bn_conv1", "conv1", "mrcnn_class_logits", "rpn_conv_shared"]
    assert report["skipped_excluded"] == [] and report["missing_in_file"] == []


def test_full_model_save_reads_model_weights_group(tmp_path):
    path = tmp_path / "full.h5"
    write_keras2_h5(path, keras2_arrays(seed=3), full_model=True)
    model = build_model()
    weights.load_weights_by_name(model, path)
    np.testing.assert_allclose(layer_values(model, "conv1")[0], keras2_arrays(seed=3)["conv1"][0][1], rtol=1e-6)


def test_exclude_leaves_layers_untouched_and_allows_other_class_count(keras2_file):
    model = build_model(num_classes=5)  # heads differ from the file's 3 classes
    before = layer_values(model, "mrcnn_class_logits")
    report = weights.load_weights_by_name(model, keras2_file, exclude=weights.COCO_HEAD_LAYERS)
    after = layer_values(model, "mrcnn_class_logits")
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert report["skipped_excluded"] == ["mrcnn_class_logits"]
    np.testing.assert_allclose(layer_values(model, "conv1")[0], keras2_arrays()["conv1"][0][1], rtol=1e-6)


def test_exclude_a_nested_model_skips_its_layers(keras2_file):
    model = build_model()
    report = weights.load_weights_by_name(model, keras2_file, exclude=["rpn_model"])
    assert report["skipped_excluded"] == ["rpn_conv_shared"]


def test_shape_mismatch_names_layer_weight_and_shapes_and_assigns_nothing(keras2_file):
    model = build_model(num_classes=5)
    conv_before = layer_values(model, "conv1")[0]
    with pytest.raises(ValueError) as err:
        weights.load_weights_by_name(model, keras2_file)
    message = str(err.value)
    assert "mrcnn_class_logits" in message and "kernel" in message
    assert "(2, 5)" in message and "(2, 3)" in message and "exclude=" in message
    np.testing.assert_array_equal(layer_values(model, "conv1")[0], conv_before)


def test_layers_missing_in_file_are_reported(tmp_path, caplog):
    arrays = keras2_arrays()
    del arrays["bn_conv1"]
    path = tmp_path / "partial.h5"
    write_keras2_h5(path, arrays)
    model = build_model()
    with caplog.at_level("INFO", logger="mrcnn.weights"):
        report = weights.load_weights_by_name(model, path)
    assert report["missing_in_file"] == ["bn_conv1"]
    assert "1 model layers" in caplog.text
    with pytest.raises(ValueError, match="not in the file"):
        weights.load_weights_by_name(build_model(), path, by_name=False)


def test_keras3_weights_round_trip_by_name(tmp_path):
    source = build_model()
    rng = np.random.default_rng(1)
    for variable in source.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    path = tmp_path / "ckpt.weights.h5"
    source.save_weights(path)

    target = build_model()
    report = weights.load_weights_by_name(target, path)
    assert sorted(report["loaded"]) == ["bn_conv1", "conv1", "mrcnn_class_logits", "rpn_conv_shared"]
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    other_heads = build_model(num_classes=4)
    report = weights.load_weights_by_name(other_heads, path, exclude=["mrcnn_class_logits"])
    assert report["skipped_excluded"] == ["mrcnn_class_logits"]
    np.testing.assert_array_equal(layer_values(other_heads, "rpn_conv_shared")[0],
                                  layer_values(source, "rpn_conv_shared")[0])
    with pytest.raises(ValueError, match="mrcnn_class_logits"):
        weights.load_weights_by_name(build_model(num_classes=4), path)

    same = build_model()
    weights.load_weights_by_name(same, path, by_name=False)
    np.testing.assert_array_equal(layer_values(same, "conv1")[0], layer_values(source, "conv1")[0])


def test_maskrcnn_load_weights_passes_by_name_through(monkeypatch, tmp_path):
    """MaskRCNN.load_weights(by_name=False) reaches the strict loader (it once always passed True)."""
    from mrcnn import model as modellib
    from mrcnn.config import Config

    seen = []

    def fake_loader(keras_model, path, exclude=None, by_name=True):
        seen.append(by_name)
        return {"loaded": [], "skipped_excluded": [], "missing_in_file": []}

    monkeypatch.setattr(weights, "load_weights_by_name", fake_loader)
    path = tmp_path / "x.weights.h5"
    path.write_bytes(b"")
    model = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    config = Config()
    config.NAME = "strict"
    model.keras_model, model.config, model.model_dir = None, config, str(tmp_path)
    model.strategy = model.clock = None  # a one-process model (MaskRCNN.__init__ sets these)
    model.load_weights(str(path))
    model.load_weights(str(path), by_name=True)
    model.load_weights(str(path), by_name=False)
    assert seen == [False, True, False]


def test_keras3_time_distributed_wrapper_by_name(tmp_path):
    def build():
        rois = keras.Input((2, 4, 4, 3))
        x = keras.layers.TimeDistributed(keras.layers.Conv2D(2, 1), name="mrcnn_class_conv1")(rois)
        x = keras.layers.TimeDistributed(keras.layers.BatchNormalization(), name="mrcnn_class_bn1")(x)
        return keras.Model(rois, x)

    source, target = build(), build()
    for variable in source.weights:
        variable.assign(np.random.default_rng(2).normal(size=variable.shape).astype("float32"))
    path = tmp_path / "td.weights.h5"
    source.save_weights(path)
    report = weights.load_weights_by_name(target, path)
    assert sorted(report["loaded"]) == ["mrcnn_class_bn1", "mrcnn_class_conv1"]
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_not_a_weight_file(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_group("something")
    with pytest.raises(ValueError, match="not a Keras weight file"):
        weights.load_weights_by_name(build_model(), path)
    with pytest.raises(FileNotFoundError):
        weights.load_weights_by_name(build_model(), tmp_path / "absent.h5")


def test_download_uses_cache_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    cached = tmp_path / "mask_rcnn_coco.h5"
    cached.write_bytes(b"cached")
    assert weights.download_weights("coco", tmp_path) == str(cached)


def test_download_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as err:
        weights.download_weights("imagenet", tmp_path / "cache", timeout=3)
    message = str(err.value)
    assert weights.IMAGENET_WEIGHTS_URL in message and "--weights" in message
    assert calls == [(weights.IMAGENET_WEIGHTS_URL, 3)]
    assert os.listdir(tmp_path / "cache") == []  # no partial file left behind
    with pytest.raises(ValueError, match="coco"):
        weights.download_weights("bogus", tmp_path)


def test_download_writes_atomically(tmp_path, monkeypatch):
    class FakeResponse:
        def __init__(self):
            self.chunks = [b"abc", b"def", b""]

        def read(self, size):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: FakeResponse())
    path = weights.download_weights("coco", tmp_path)
    assert open(path, "rb").read() == b"abcdef"
    assert os.listdir(tmp_path) == ["mask_rcnn_coco.h5"]


def test_hand_written_keras2_file_agrees_with_keras_legacy_loader(keras2_file):
    def build_flat():
        image = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(image)
        x = keras.layers.BatchNormalization(name="bn_conv1")(x)
        return keras.Model(image, x)

    ours, theirs = build_flat(), build_flat()
    weights.load_weights_by_name(ours, keras2_file)
    theirs.load_weights(str(keras2_file), by_name=True, skip_mismatch=True)
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keras3_file_without_layer_names_falls_back_to_a_clone(tmp_path):
    source = build_model()
    for variable in source.weights:
        variable.assign(np.random.default_rng(4).normal(size=variable.shape).astype("float32"))
    path = tmp_path / "old.weights.h5"
    source.save_weights(path)
    with h5py.File(path, "a") as f:
        f.visititems(lambda name, obj: obj.attrs.__delitem__("name") if "name" in obj.attrs else None)
    target = build_model()
    report = weights.load_weights_by_name(target, path, exclude=["conv1"])
    assert report["skipped_excluded"] == ["conv1"]
    np.testing.assert_array_equal(layer_values(target, "bn_conv1")[0], layer_values(source, "bn_conv1")[0])
    assert not np.array_equal(layer_values(target, "conv1")[0], layer_values(source, "conv1")[0])


class SubclassedHeads(keras.Model):
    """Subclassed model (layers saved under attribute names, no 'layers' group) with a custom train_step."""

    def __init__(self, num_classes):
        super().__init__(name="heads_model")
        self.shared = keras.layers.Dense(3, name="mrcnn_bbox_fc")
        self.logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits")

    def call(self, features):
        """features: [batch, 4] -> logits [batch, num_classes]."""
        return self.logits(self.shared(features))

    def train_step(self, data):
        return {}


def test_keras3_subclassed_model_by_name(tmp_path):
    source = SubclassedHeads(2)
    source(np.zeros((1, 4), "float32"))
    path = tmp_path / "sub.weights.h5"
    source.save_weights(path)
    target = SubclassedHeads(5)
    target(np.zeros((1, 4), "float32"))
    report = weights.load_weights_by_name(target, path, exclude=["mrcnn_class_logits"])
    assert report["loaded"] == ["mrcnn_bbox_fc"]
    np.testing.assert_array_equal(target.shared.kernel.numpy(), source.shared.kernel.numpy())
