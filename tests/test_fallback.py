"""Config.DETECTION_FALLBACK: an image where every ROI scores background still gets one (flagged) detection."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn.detection import refine_detections_graph  # noqa: E402
from mrcnn_shapes import ShapesInferenceConfig, make_shapes  # noqa: E402


class FallbackConfig(ShapesInferenceConfig):
    DETECTION_FALLBACK = True
    DETECTION_MIN_CONFIDENCE = 0.5


def _all_background(rng, count=6, classes=3):
    """rois [N, 4], probs [N, C] whose argmax is background everywhere, deltas [N, C, 4] zero."""
    y1x1 = rng.uniform(0.1, 0.4, (count, 2))
    rois = np.concatenate([y1x1, y1x1 + 0.3], axis=1).astype(np.float32)
    probs = np.zeros((count, classes), np.float32)
    probs[:, 0] = 0.9
    probs[:, 1] = np.linspace(0.01, 0.06, count)
    probs[:, 2] = 0.1 - probs[:, 1]
    return rois, probs, np.zeros((count, classes, 4), np.float32)


def test_refine_returns_the_most_foreground_roi_when_all_score_background():
    rois, probs, deltas = _all_background(np.random.default_rng(0))
    probs[3, 0] = 0.7  # ROI 3 is the least background: 0.3 foreground, class 2 the larger part
    probs[3, 1], probs[3, 2] = 0.05, 0.25
    window = tf.constant([0.0, 0.0, 1.0, 1.0])
    det, det_probs = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas),
                                             window, FallbackConfig())
    det = det.numpy()
    real = det[det[:, 4] > 0]
    assert len(real) == 1
    np.testing.assert_allclose(real[0, :4], rois[3], atol=1e-6)  # zero deltas: the ROI itself
    assert real[0, 4] == 2 and real[0, 5] == pytest.approx(0.25)
    np.testing.assert_allclose(det_probs.numpy()[0], probs[3])
    # Matterport's behaviour without the flag: nothing.
    plain = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas), window,
                                    ShapesInferenceConfig())[0].numpy()
    assert not (plain[:, 4] > 0).any()


def test_refine_falls_back_to_the_best_proposal_when_nothing_is_foreground():
    rois, probs, deltas = _all_background(np.random.default_rng(1))
    probs[:] = [1.0, 0.0, 0.0]
    det = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas),
                                  tf.constant([0.0, 0.0, 1.0, 1.0]), FallbackConfig())[0].numpy()
    real = det[det[:, 4] > 0]
    assert len(real) == 1
    np.testing.assert_allclose(real[0, :4], rois[0], atol=1e-6)  # first = best RPN score


def test_refine_keeps_real_detections_untouched():
    rois, probs, deltas = _all_background(np.random.default_rng(2))
    probs[2] = [0.1, 0.8, 0.1]
    det = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas),
                                  tf.constant([0.0, 0.0, 1.0, 1.0]), FallbackConfig())[0].numpy()
    real = det[det[:, 4] > 0]
    assert len(real) == 1 and real[0, 5] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def background_model(tmp_path_factory):
    """A random-weight model whose classifier scores every ROI as background."""
    model = modellib.MaskRCNN("inference", FallbackConfig(), str(tmp_path_factory.mktemp("fallback")))
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    kernel[:] = 0.0
    bias[:] = [8.0, 0.0, 0.5]
    layer.set_weights([kernel, bias])
    return model


def test_a_model_that_sees_only_background_still_returns_one_flagged_lesion(background_model, tmp_path):
    from skinlesion.inference import Predictor
    image = make_shapes(1, seed=3).load_image(0)
    result = background_model.detect([image])[0]
    assert len(result["scores"]) == 1 and result["class_ids"][0] == 2
    assert result["scores"][0] < 0.01 and result["masks"].shape[:2] == image.shape[:2]
    predictor = Predictor(background_model, ["BG", "square", "circle"], str(tmp_path), 0.5,
                          write_overlays=False)
    outcome = predictor.run([("shape.png", None, lambda: image)], progress=False)
    predictor.write_summary(outcome)
    record = outcome["images"][0]
    assert record["low_confidence"] and record["fallback"] and not record["no_detection"]
    assert record["lesion_mask_area"] > 0  # never an empty mask where a lesion is expected
    with open(tmp_path / "predictions.json") as f:
        written = json.load(f)
    entry = written["images"][0] if isinstance(written, dict) else written[0]
    assert entry["fallback"] is True and entry["low_confidence"] is True


class ForegroundConfig(FallbackConfig):
    DETECTION_SCORE = "foreground"
    NUM_CLASSES = 4


def test_foreground_score_keeps_a_lesion_whose_mass_is_split_over_diagnoses():
    """P = [0.4 background, 0.2 x 3 diagnoses]: "class" finds nothing, "foreground" a lesion scored 0.6."""
    rois = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]], np.float32)
    probs = np.array([[0.4, 0.2, 0.25, 0.15], [0.45, 0.2, 0.2, 0.15], [0.9, 0.03, 0.03, 0.04]], np.float32)
    deltas = np.zeros((3, 4, 4), np.float32)
    window = tf.constant([0.0, 0.0, 1.0, 1.0])

    class ClassConfig(ForegroundConfig):
        DETECTION_SCORE = "class"
        DETECTION_FALLBACK = False

    plain = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas), window,
                                    ClassConfig())[0].numpy()
    assert not (plain[:, 4] > 0).any()
    det = refine_detections_graph(tf.constant(rois), tf.constant(probs), tf.constant(deltas), window,
                                  ForegroundConfig())[0].numpy()
    real = det[det[:, 4] > 0]
    # ROIs 0 and 1 overlap (one NMS across classes): one lesion, class 2 (0.25), score 1 - 0.4
    assert len(real) == 1
    assert real[0, 4] == 2 and real[0, 5] == pytest.approx(0.6)
    np.testing.assert_allclose(real[0, :4], rois[0], atol=1e-6)
    with pytest.raises(Exception, match="DETECTION_SCORE"):
        type("Bad", (ForegroundConfig,), {"DETECTION_SCORE": "max"})()


def test_predictor_flags_fallback_by_the_models_rule(tmp_path):
    import types
    from skinlesion.inference import Predictor
    result = {"scores": np.array([0.55]), "probs": np.array([[0.45, 0.2, 0.2, 0.15]])}
    for rule, expected in (("class", True), ("foreground", False)):
        model = types.SimpleNamespace(config=types.SimpleNamespace(DETECTION_SCORE=rule, BATCH_SIZE=1))
        predictor = Predictor(model, ["BG", "a", "b", "c"], str(tmp_path / rule), 0.5, write_overlays=False)
        assert predictor._is_fallback(result) is expected
    assert predictor._is_fallback({"scores": np.array([0.4]), "probs": np.array([[0.6, 0.2, 0.1, 0.1]])})
