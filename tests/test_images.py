"""Image geometry: resize modes, mask resizing, mini-masks, unmolding, image meta."""
import numpy as np
import pytest

from mrcnn import images as I
from mrcnn.boxes import compute_overlaps_masks, extract_bboxes
from mrcnn.config import Config


def gradient_image(h, w):
    """A uint8 [h, w, 3] image whose pixels differ, so crops and pads can be located."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy % 256, xx % 256, (yy + xx) % 256], axis=-1).astype(np.uint8)


def rect_scene(h, w, y1, x1, y2, x2):
    """Image white inside a rectangle and black elsewhere, and the matching [h, w, 1] mask."""
    mask = np.zeros((h, w, 1), dtype=bool)
    mask[y1:y2, x1:x2, 0] = True
    image = np.repeat(mask.astype(np.uint8) * 255, 3, axis=2)
    return image, mask


def test_resize_none_is_identity():
    image = gradient_image(30, 50)
    out, window, scale, padding, crop = I.resize_image(image, min_dim=64, max_dim=128, mode="none")
    assert out is image and window == (0, 0, 30, 50) and scale == 1 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


def test_resize_square_downscale_worked_example():
    image = gradient_image(100, 200)
    # min_dim never shrinks (scale >= 1); the 200-px side must fit max_dim 128 -> scale 0.64.
    out, window, scale, padding, crop = I.resize_image(image, min_dim=64, max_dim=128, mode="square")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(0.64)
    assert window == (32, 0, 96, 128)
    assert padding == [(32, 32), (0, 0), (0, 0)]
    assert crop is None
    assert out[:32].max() == 0 and out[96:].max() == 0
    assert out[32:96].max() > 0


def test_resize_square_upscale_worked_example():
    image = gradient_image(40, 50)
    out, window, scale, padding, _ = I.resize_image(image, min_dim=64, max_dim=128, mode="square")
    assert scale == pytest.approx(1.6)  # short side 40 -> 64
    assert out.shape == (128, 128, 3)
    assert window == (32, 24, 96, 104)
    assert padding == [(32, 32), (24, 24), (0, 0)]


def test_resize_square_min_scale():
    image = gradient_image(100, 100)
    _, window, scale, _, _ = I.resize_image(image, min_dim=32, max_dim=256, min_scale=2, mode="square")
    assert scale == 2 and window == (28, 28, 228, 228)


def test_resize_pad64_worked_example():
    image = gradient_image(100, 150)
    out, window, scale, padding, crop = I.resize_image(image, min_dim=64, max_dim=128, mode="pad64")
    assert scale == 1 and crop is None
    assert out.shape == (128, 192, 3)          # 100 -> 128, 150 -> 192
    assert padding == [(14, 14), (21, 21), (0, 0)]
    assert window == (14, 21, 114, 171)
    np.testing.assert_array_equal(out[14:114, 21:171], image)
    with pytest.raises(AssertionError):
        I.resize_image(image, min_dim=100, mode="pad64")


def test_resize_crop_is_seeded_random_crop():
    image = gradient_image(100, 150)
    np.random.seed(3)
    out, window, scale, padding, crop = I.resize_image(image, min_dim=64, mode="crop")
    assert out.shape == (64, 64, 3) and scale == 1 and window == (0, 0, 64, 64)
    y, x, h, w = crop
    assert (h, w) == (64, 64) and 0 <= y <= 36 and 0 <= x <= 86
    np.testing.assert_array_equal(out, image[y:y + 64, x:x + 64])
    np.random.seed(3)
    assert I.resize_image(image, min_dim=64, mode="crop")[4] == crop


def test_resize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="stretch"):
        I.resize_image(gradient_image(10, 10), min_dim=64, max_dim=64, mode="stretch")


@pytest.mark.parametrize("mode,kwargs", [
    ("square", {"min_dim": 64, "max_dim": 128}),
    ("pad64", {"min_dim": 64}),
    ("crop", {"min_dim": 64}),
    ("none", {}),
])
def test_resize_mask_follows_resize_image(mode, kwargs):
    image, mask = rect_scene(90, 140, 20, 30, 70, 120)
    np.random.seed(7)
    out, window, scale, padding, crop = I.resize_image(image, mode=mode, **kwargs)
    resized = I.resize_mask(mask, scale, padding, crop)
    assert resized.dtype == bool and resized.shape == out.shape[:2] + (1,)
    from_image = out[:, :, :1] > 127
    assert compute_overlaps_masks(resized, from_image)[0, 0] > 0.95


def test_resize_mask_keeps_empty_instance_axis():
    assert I.resize_mask(np.zeros((20, 30, 0), bool), 2.0, [(0, 0), (0, 0), (0, 0)]).shape == (40, 60, 0)


def test_minimize_expand_round_trip_blob():
    yy, xx = np.mgrid[0:100, 0:120]
    blob = ((yy - 45) ** 2 / 30 ** 2 + (xx - 60) ** 2 / 40 ** 2) <= 1
    square = np.zeros((100, 120), bool)
    square[5:20, 90:115] = True
    masks = np.stack([blob, square], axis=-1)
    bbox = extract_bboxes(masks)
    mini = I.minimize_mask(bbox, masks, (28, 28))
    assert mini.shape == (28, 28, 2) and mini.dtype == bool
    restored = I.expand_mask(bbox, mini, (100, 120, 3))
    assert restored.shape == masks.shape
    ious = np.diag(compute_overlaps_masks(masks, restored))
    assert np.all(ious > 0.9)


def test_unmold_mask_places_mask_in_box():
    full = I.unmold_mask(np.ones((4, 4), np.float32), (2, 3, 6, 9), (10, 10, 3))
    assert full.dtype == bool and full.shape == (10, 10)
    expected = np.zeros((10, 10), bool)
    expected[2:6, 3:9] = True
    np.testing.assert_array_equal(full, expected)


def test_unmold_mask_thresholds_soft_values():
    soft = np.zeros((8, 8), np.float32)
    soft[:, :4] = 0.9
    soft[:, 4:] = 0.1
    full = I.unmold_mask(soft, (0, 0, 8, 8), (8, 8))
    assert full[:, :4].all() and not full[:, 4:].any()
    soft[:, 4:] = 0.35
    assert not I.unmold_mask(soft, (0, 0, 8, 8), (8, 8))[:, 4:].any()
    assert I.unmold_mask(soft, (0, 0, 8, 8), (8, 8), threshold=0.3).all()


def test_unmold_mask_box_partly_outside_image():
    full = I.unmold_mask(np.ones((5, 5), np.float32), (-2, -3, 4, 5), (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[0:4, 0:5] = True
    np.testing.assert_array_equal(full, expected)
    full = I.unmold_mask(np.ones((5, 5), np.float32), (7, 8, 13, 14), (10, 10))
    assert full.sum() == 3 * 2 and full[7:10, 8:10].all()
    # The part of the mask outside the image is cut off, not squeezed in.
    half = np.zeros((6, 6), np.float32)
    half[:, 3:] = 1
    full = I.unmold_mask(half, (0, -6, 6, 6), (6, 6))
    assert full.all()


def test_unmold_mask_box_outside_or_degenerate():
    assert not I.unmold_mask(np.ones((4, 4)), (12, 12, 15, 15), (10, 10)).any()
    assert not I.unmold_mask(np.ones((4, 4)), (3, 3, 3, 8), (10, 10)).any()


def test_image_meta_round_trip():
    meta = I.compose_image_meta(7, (300, 400, 3), (128, 128, 3), (16, 0, 112, 128), 0.32, [1, 1, 0, 1])
    assert meta.shape == (12 + 4,) and meta.dtype == np.float32
    parsed = I.parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    np.testing.assert_array_equal(parsed["original_image_shape"][0], [300, 400, 3])
    np.testing.assert_array_equal(parsed["image_shape"][1], [128, 128, 3])
    np.testing.assert_array_equal(parsed["window"][0], [16, 0, 112, 128])
    assert parsed["scale"][0] == pytest.approx(0.32)
    np.testing.assert_array_equal(parsed["active_class_ids"][0], [1, 1, 0, 1])


def test_mold_unmold_image_round_trip():
    config = Config()
    image = np.stack([np.arange(256)] * 3, axis=-1).reshape(16, 16, 3).astype(np.uint8)
    molded = I.mold_image(image, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - config.MEAN_PIXEL, rtol=1e-5)
    np.testing.assert_array_equal(I.unmold_image(molded, config), image)


def test_shades_of_grey_removes_a_colour_cast_and_ignores_padding():
    from mrcnn.images import shades_of_grey
    rng = np.random.default_rng(0)
    grey = rng.uniform(40, 200, (32, 32, 1)).astype(np.float32)
    cast = np.array([1.0, 0.7, 0.5], np.float32)  # a warm (reddish) illuminant
    image = np.clip(grey * cast, 0, 255).astype(np.uint8)
    out = shades_of_grey(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    means = out.reshape(-1, 3).mean(axis=0)
    assert means.max() / means.min() < 1.03, means  # channels balanced again
    before = image.reshape(-1, 3).mean(axis=0)
    assert before.max() / before.min() > 1.9
    # Zero padding (square resize) changes no gain.
    padded = np.zeros((48, 32, 3), np.uint8)
    padded[8:40] = image
    np.testing.assert_allclose(shades_of_grey(padded)[8:40], out, atol=0.5)
    assert not shades_of_grey(padded)[:8].any()
    # A black image passes through unchanged instead of dividing by zero.
    assert not shades_of_grey(np.zeros((4, 4, 3), np.uint8)).any()


def test_mold_image_applies_config_preprocess():
    from mrcnn.config import Config
    from mrcnn.images import mold_image, shades_of_grey

    class Plain(Config):
        NAME = "plain"

    class Sog(Config):
        NAME = "sog"
        PREPROCESS = "shades_of_grey"

    image = np.dstack([np.full((8, 8), v, np.uint8) for v in (200, 120, 80)])
    np.testing.assert_allclose(mold_image(image, Plain()), image.astype(np.float32) - Plain().MEAN_PIXEL)
    np.testing.assert_allclose(mold_image(image, Sog()), shades_of_grey(image) - Sog().MEAN_PIXEL, atol=1e-4)
