"""The classifier in the export (skinlesion.export_classifier): loaded by plain TensorFlow, it equals ClassifierRun.

A tiny classifier run with random weights, a temperature and criteria
outputs is written by hand (no training: the equivalence needs outputs,
not good ones), exported, and loaded in a fresh interpreter that cannot
import mrcnn or skinlesion.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lesions
from test_export import BLOCK_PROJECT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINY_CLS = {"CLASS_SCHEME": "isic2017", "BACKBONE": "tiny", "IMAGE_SIZE": 32, "MASK_MODE": "attention",
            "CRITERIA": "ph2", "TTA": True}
TEMPERATURE = 1.7

LOADER = BLOCK_PROJECT + textwrap.dedent("""
    data = np.load(inputs)
    serving = tf.saved_model.load(export_dir).signatures["serving_default"]
    out = serving(crops=tf.constant(data["crops"]), masks=tf.constant(data["masks"]))
    np.savez(output, **{name: value.numpy() for name, value in out.items()})
""")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A classifier run folder: config.json, classifier_best.weights.h5, calibration.json."""
    import keras
    from skinlesion.classifier import ClassifierConfig, build_classifier
    from skinlesion.classifier_train import BEST, write_config
    run = tmp_path_factory.mktemp("cls") / "classifier20260101T120000"
    run.mkdir()
    keras.utils.set_random_seed(0)
    config = ClassifierConfig(**TINY_CLS)
    model = build_classifier(config, len(config.class_names()))
    model.save_weights(str(run / BEST))
    write_config(str(run), config)
    (run / "calibration.json").write_text(json.dumps({"temperature": TEMPERATURE}))
    return run


def test_exported_classifier_equals_the_run(classifier_run, tmp_path):
    from skinlesion.classifier_train import ClassifierRun
    from skinlesion.export_classifier import export_classifier
    out = tmp_path / "classifier"
    written = export_classifier(str(classifier_run), str(out))
    assert all(os.path.exists(p) for p in written)
    info = json.loads((out / "export.json").read_text())
    assert info["temperature"] == TEMPERATURE and info["mask_mode"] == "attention" and info["criteria"]
    assert "CROP_MARGIN" in (out / "README.txt").read_text()
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    masks = (rng.uniform(0, 1, (3, 32, 32, 1)) > 0.4).astype(np.float32)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, crops=crops, masks=masks)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-I", str(script), str(out), str(inputs), str(tmp_path / "out.npz")],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    served = dict(np.load(tmp_path / "out.npz"))
    run = ClassifierRun(str(classifier_run))
    probs, criteria = run.predict(crops, masks[..., 0])
    np.testing.assert_allclose(served["probs"], probs, atol=1e-5)
    np.testing.assert_allclose(run.probabilities(crops, masks[..., 0]), probs)
    assert set(served) == {"probs"} | {f"criterion_{name}" for name in criteria}
    for name, value in criteria.items():
        np.testing.assert_allclose(served[f"criterion_{name}"], value, atol=1e-5)


def test_export_with_a_missing_classifier_fails_naming_it_before_writing(tmp_path, capsys):
    missing = tmp_path / "no_classifier"
    out = tmp_path / "o"
    assert lesions.main(["--mode", "export", "--weights", str(tmp_path / "no_run"), "--classifier", str(missing),
                         "--out", str(out), "--quiet"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()
