"""mrcnn.runtime: precision, oneDNN and allocator choices per CPU; PooledConv2D equals the convolution."""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import runtime  # noqa: E402
from mrcnn.heads import PooledConv2D  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_flags(monkeypatch):
    """Function set(flags) making runtime see a CPU with these flags (and no GPU)."""
    def set_flags(flags):
        monkeypatch.setitem(runtime._state, "flags", frozenset(flags))
        monkeypatch.setattr(runtime, "_gpu_visible", lambda: False)
        monkeypatch.delitem(runtime._state, "logged_dtype", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    return set_flags


def test_auto_precision_is_bfloat16_only_where_native(fake_flags, monkeypatch):
    fake_flags({"avx2", "fma", "avx512f"})
    assert runtime.resolve_compute_dtype("auto") == "float32"
    fake_flags({"avx2", "avx512f", "avx512_bf16"})
    assert runtime.resolve_compute_dtype("auto") == "bfloat16"
    fake_flags({"avx2", "amx_bf16", "amx_tile"})
    assert runtime.resolve_compute_dtype("auto") == "bfloat16"
    # oneDNN off: TensorFlow's Eigen kernels emulate bfloat16 even on such a CPU.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.delitem(runtime._state, "logged_dtype", raising=False)
    assert runtime.resolve_compute_dtype("auto") == "float32"
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    # An explicit choice is kept whatever the CPU.
    fake_flags({"avx2"})
    assert runtime.resolve_compute_dtype("bfloat16") == "bfloat16"
    assert runtime.resolve_compute_dtype("float32") == "float32"


def test_onednn_default_follows_tensorflows_rule(fake_flags, monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    fake_flags({"avx2", "fma"})
    assert not runtime.onednn_default()
    fake_flags({"avx2", "avx512f", "avx512_vnni"})
    assert runtime.onednn_default()
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")
    assert not runtime.onednn_default()


def test_auto_precision_builds_the_resolved_policy(fake_flags):
    from mrcnn.precision import compute_dtype_scope
    fake_flags({"avx2"})
    with compute_dtype_scope("auto"):
        assert keras.config.dtype_policy().name == "float32"
    fake_flags({"avx512_bf16"})
    with compute_dtype_scope("auto"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"


def _configure_in_child(env_extra, mode):
    """configure(mode) in a fresh interpreter (TensorFlow not yet imported); returns (settings, env var)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "MRCNN_MALLOPT")}
    env.update(env_extra)
    code = ("import json, os, sys; sys.path.insert(0, sys.argv[1]); from mrcnn import runtime; "
            f"s = runtime.configure({mode!r}); "
            "print(json.dumps([s, os.environ.get('TF_ENABLE_ONEDNN_OPTS'), 'tensorflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, ROOT], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_configure_respects_the_users_environment_and_never_imports_tensorflow():
    settings, value, tf_imported = _configure_in_child({"TF_ENABLE_ONEDNN_OPTS": "0"}, "train")
    assert value == "0" and settings["onednn"] is False and settings["onednn_source"] == "environment"
    assert not tf_imported


def test_configure_decides_onednn_per_mode_where_tensorflow_would_not_enable_it():
    settings, value, _ = _configure_in_child({}, "train")
    if runtime.onednn_default():
        assert value is None and settings["onednn"]  # TensorFlow's default (on) stands
    else:
        expected = runtime.ONEDNN_CHOICE.get("train")
        assert (value == ("1" if expected else "0")) if expected is not None else value is None
    predict, value, _ = _configure_in_child({}, "predict")
    if "predict" not in runtime.ONEDNN_CHOICE:
        assert value is None and predict["onednn"] == runtime.onednn_default()
    assert settings["malloc_tuned"] == sys.platform.startswith("linux")


def test_malloc_tuning_can_be_turned_off():
    settings, _, _ = _configure_in_child({"MRCNN_MALLOPT": "0"}, None)
    assert settings["malloc_tuned"] is False


@pytest.mark.parametrize("kernel,pool,activation", [(7, 7, None), (3, 3, "relu"), (1, 1, None)])
def test_pooled_conv_equals_the_valid_convolution_forward_and_backward(kernel, pool, activation):
    rng = np.random.default_rng(kernel)
    x = tf.constant(rng.normal(size=(6, pool, pool, 8)).astype(np.float32))
    ours = PooledConv2D(5, kernel, padding="valid", activation=activation, name="ours")
    ref = keras.layers.Conv2D(5, kernel, padding="valid", activation=activation, name="ref")
    ours.build(x.shape)
    ref.build(x.shape)
    assert [w.shape for w in ours.weights] == [(kernel, kernel, 8, 5), (5,)]  # Matterport's shapes
    ref.set_weights(ours.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ours, y_ref = ours(x), ref(x)
        loss_ours = tf.reduce_sum(y_ours * tf.range(5, dtype=tf.float32))
        loss_ref = tf.reduce_sum(y_ref * tf.range(5, dtype=tf.float32))
    assert y_ours.shape == y_ref.shape == (6, 1, 1, 5)
    np.testing.assert_allclose(y_ours.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(tape.gradient(loss_ours, [x] + ours.trainable_weights),
                    tape.gradient(loss_ref, [x] + ref.trainable_weights)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_pooled_conv_refuses_a_kernel_smaller_than_its_input():
    layer = PooledConv2D(4, 3, padding="valid", name="mrcnn_class_conv1")
    with pytest.raises(ValueError, match="mrcnn_class_conv1"):
        layer.build((None, 7, 7, 8))


def test_pooled_conv_in_bfloat16_keeps_float32_weights():
    from mrcnn.precision import compute_dtype_scope
    with compute_dtype_scope("bfloat16"):
        layer = PooledConv2D(4, 7, padding="valid", name="bf16")
    y = layer(tf.ones([2, 7, 7, 3]))
    assert y.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"
