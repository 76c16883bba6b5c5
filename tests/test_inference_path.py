"""One inference path (mrcnn.transform): the runtime threshold, the graph's mask boxes, the named image meta.

detect(min_confidence=t) on one model must equal detect() of a model whose
graph was built with t (MaskRCNN(..., graph_min_confidence=t)), fallback
included, on fixed random weights: no training is needed for the
equivalence, only detections.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn_shapes import ShapesInferenceConfig  # noqa: E402

# Keras's save_weights converts variables with np.array(copy=False) (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINY = dict(IMAGE_MAX_DIM=64, IMAGE_MIN_DIM=64, RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TOP_DOWN_PYRAMID_SIZE=32,
            FPN_CLASSIF_FC_LAYERS_SIZE=64, POST_NMS_ROIS_INFERENCE=32, PRE_NMS_LIMIT=200, MASK_HEAD_CHANNELS=32,
            COMPUTE_DTYPE="float32", IMAGES_PER_GPU=1, GPU_COUNT=1)


class ClassFallbackConfig(ShapesInferenceConfig):
    """Matterport's "class" scoring with the fallback: its fallback ROI can be one no detection came from."""

    DETECTION_FALLBACK = True
    DETECTION_MIN_CONFIDENCE = 0.5


def lesion_config():
    from skinlesion import LesionConfig  # "foreground" scoring, fallback on, masks in grown boxes
    return LesionConfig(classes="isic2017", DETECTION_MASK_BOX_SCALE=1.2, **TINY)


def images():
    from skinlesion import synthetic
    return [synthetic.generate(seed, size=size)[0] for seed, size in ((5, (50, 64)), (6, (100, 128)), (7, (30, 41)))]


@pytest.fixture(scope="module", params=["lesion", "class_fallback"])
def model_and_weights(request, tmp_path_factory):
    """(inference MaskRCNN with the default graph, its weights file, the images)."""
    import keras
    from mrcnn.model import MaskRCNN
    folder = tmp_path_factory.mktemp(request.param)
    keras.utils.set_random_seed(0)
    config = lesion_config() if request.param == "lesion" else ClassFallbackConfig()
    model = MaskRCNN("inference", config, str(folder))
    weights = str(folder / "weights.weights.h5")
    model.keras_model.save_weights(weights)
    return model, weights, images()


def assert_same_results(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a["rois"], b["rois"])
        np.testing.assert_array_equal(a["class_ids"], b["class_ids"])
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-6)
        assert a["masks"].shape == b["masks"].shape
        # The mask head runs on more boxes when the graph keeps more: allow a float-rounding pixel.
        assert (a["masks"] != b["masks"]).sum() <= 2


def thresholds(results):
    """0, one between two scores of the first image, one above every score."""
    scores = np.sort(np.concatenate([r["scores"] for r in results]))[::-1]
    first = np.sort(results[0]["scores"])[::-1]
    middle = float((first[0] + first[1]) / 2) if len(first) > 1 else float(first[0]) / 2
    return [0.0, middle, float(min(1.0, scores.max() + 1e-3))]


def test_runtime_threshold_equals_a_graph_built_with_it(model_and_weights, tmp_path):
    from mrcnn.model import MaskRCNN
    model, weights, imgs = model_and_weights
    everything = model.detect(imgs, min_confidence=0.0)
    for t in thresholds(everything):
        built = MaskRCNN("inference", model.config, str(tmp_path), graph_min_confidence=t)
        built.load_weights(weights)
        expected = built.detect(imgs)
        got = model.detect(imgs, min_confidence=t)
        assert_same_results(got, expected)
        if t > max(r["scores"].max() for r in everything):  # nothing passes: the one fallback detection
            assert all(len(r["scores"]) == 1 and r["scores"][0] <= t for r in got)


def test_default_threshold_is_the_configs(model_and_weights):
    model, _, imgs = model_and_weights
    default = model.detect(imgs)
    explicit = model.detect(imgs, min_confidence=model.config.DETECTION_MIN_CONFIDENCE)
    assert_same_results(default, explicit)


def test_the_graph_outputs_the_mask_boxes_it_used(model_and_weights):
    from mrcnn.boxes import scale_boxes
    model, _, imgs = model_and_weights
    out, _, _, _ = model.run_inference(imgs[:1])
    detections, mask_boxes = out["detections"][0], out["mask_boxes"][0]
    n = int((detections[:, 4] > 0).sum())
    assert n > 0 and mask_boxes.shape == (model.config.DETECTION_MAX_INSTANCES, 4)
    np.testing.assert_allclose(mask_boxes[:n], scale_boxes(detections[:n, :4], model.config.DETECTION_MASK_BOX_SCALE),
                               atol=1e-7)
    assert not mask_boxes[n:].any()
    if "fallback_mask_boxes" in out:
        np.testing.assert_allclose(out["fallback_mask_boxes"][0],
                                   scale_boxes(out["fallback_detections"][0][:, :4],
                                               model.config.DETECTION_MASK_BOX_SCALE), atol=1e-7)


def test_masks_are_pasted_into_the_given_mask_boxes_once():
    """DETECTION_MASK_BOX_SCALE 1.2 in the config: the graph's mask_boxes are used as they are, not grown again."""
    from mrcnn.transform import InferenceTransform
    transform = InferenceTransform(lesion_config())
    num_classes = transform.config.NUM_CLASSES
    detections = np.zeros((4, 6), np.float32)
    detections[0] = [0.25, 0.25, 0.75, 0.75, 1, 0.9]
    mask_boxes = np.zeros((4, 4), np.float32)
    mask_boxes[0] = [0.1, 0.1, 0.9, 0.9]
    outputs = {"detections": detections, "detection_probs": np.full((4, num_classes), 0.25, np.float32),
               "mrcnn_mask": np.ones((4, 28, 28, num_classes), np.float32), "mask_boxes": mask_boxes}
    shape = (100, 100, 3)
    result = transform.unmold(outputs, shape, shape, (0, 0, 100, 100), min_confidence=0.5)
    assert result["rois"].tolist() == [[25, 25, 75, 75]]
    rows, cols = np.where(result["masks"][..., 0])
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (10, 90, 10, 90)
    # Without the graph's boxes (Matterport's unmold_detections call) they are grown here, once.
    _, _, _, masks, _ = transform.unmold_detections(detections, outputs["mrcnn_mask"], shape, shape, (0, 0, 100, 100))
    assert int(masks.sum()) == 60 * 60
    # Below the threshold and no fallback output: nothing.
    assert len(transform.unmold(outputs, shape, shape, (0, 0, 100, 100), min_confidence=0.95)["scores"]) == 0


def test_named_image_meta_round_trips():
    import tensorflow as tf
    from mrcnn import images as I
    meta = I.compose_image_meta(7, (300, 400, 3), (128, 128, 3), (16, 0, 112, 128), 0.32, [1, 1, 0, 1])
    assert meta.shape == (1 + 3 + 3 + 4 + 1 + 4,)
    parsed = I.parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    assert parsed["original_image_shape"][0].tolist() == [300, 400, 3]
    assert parsed["image_shape"][0].tolist() == [128, 128, 3]
    assert parsed["window"][1].tolist() == [16, 0, 112, 128]
    np.testing.assert_allclose(parsed["scale"], [0.32, 0.32])
    assert parsed["active_class_ids"][0].tolist() == [1, 1, 0, 1]
    # The same field of a tensor, for the graph.
    window = I.image_meta_field(tf.constant(meta[None]), "window").numpy()
    assert window.tolist() == [[16, 0, 112, 128]]
    with pytest.raises(KeyError, match="no field 'windows'"):
        I.image_meta_field(meta, "windows")
    config = ShapesInferenceConfig()
    assert I.compose_image_meta(0, (1, 1, 3), (1, 1, 3), (0, 0, 1, 1), 1, [0] * config.NUM_CLASSES).size \
        == config.IMAGE_META_SIZE
