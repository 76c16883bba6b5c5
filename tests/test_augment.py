"""Scale and appearance augmentation: masks stay on their lesions, lesions land at the asked scales,
the scale-moving tool maps masks exactly, and the anchors cover lesions of 1-80 % of the image."""
import numpy as np
import pytest

from skinlesion.augment import (DermoscopyAugmentation, FrameAspect, LesionScale, aspect_window, dark_field,
                                dermoscopy_augmentation, ink_and_ruler, lesion_union, skin_canvas, vignette,
                                white_balance)
from skinlesion.reframe import canvas_shape_for, move_to_scale, square_crop, write_moved_folder


def lesion_image(h=240, w=320, box=(60, 100, 180, 230), seed=0):
    """Skin-coloured noisy image with one pure-blue elliptical 'lesion'; returns (image, mask uint8)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal((200, 160, 140), 6, (h, w, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    y1, x1, y2, x2 = box
    cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2, (x2 - x1) / 2
    mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    image[mask > 0] = (20, 30, 230)
    return image, mask


def blue(image):
    """Pixels that are the lesion's blue. bool [H, W]."""
    image = image.astype(int)
    return (image[..., 2] > 150) & (image[..., 0] < 90)


def iou(a, b):
    return np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum())


@pytest.mark.parametrize("target", [0.01, 0.03, 0.1, 0.3, 0.6])
def test_lesion_scale_puts_the_lesion_at_the_target_share_with_its_mask(target):
    image, mask = lesion_image()
    rng = np.random.default_rng(3)
    out, masks = LesionScale(p=1.0).apply(image, [mask], target, rng)
    assert out.shape == image.shape and masks[0].shape == mask.shape
    share = lesion_union(masks, out.shape).mean()
    assert share == pytest.approx(target, rel=0.15)
    # the mask sits on the blue pixels: resampling only moves the boundary by about a pixel
    assert iou(masks[0] > 0, blue(out)) > 0.85


def test_zoom_out_canvas_has_no_lesion_colour_and_skin_tone():
    image, mask = lesion_image()
    out, masks = LesionScale(p=1.0).apply(image, [mask], 0.02, np.random.default_rng(0))
    outside = masks[0] == 0
    assert blue(out)[outside].mean() < 0.005  # the canvas holds no copy of the lesion
    assert np.abs(out[outside].mean(axis=0) - (200, 160, 140)).max() < 15


def test_lesion_scale_draws_log_uniform_targets_and_skips_images_without_lesions():
    scale = LesionScale(area_range=(0.01, 0.8), p=1.0)
    rng = np.random.default_rng(0)
    targets = np.array([scale.target_area(rng) for _ in range(4000)])
    assert targets.min() >= 0.01 and targets.max() <= 0.8
    assert np.median(targets) == pytest.approx(np.sqrt(0.01 * 0.8), rel=0.1)
    image, _ = lesion_image()
    empty = np.zeros(image.shape[:2], np.uint8)
    out = scale(image=image, masks=[empty], rng=rng)
    assert out["image"] is image
    with pytest.raises(ValueError, match="area_range"):
        LesionScale(area_range=(0.5, 0.1))


def test_full_augmentation_keeps_masks_on_lesions():
    """Frame cuts, flips, rotation, affine and re-framing move image and mask together (colour changes off)."""
    aug = DermoscopyAugmentation(strong=False, seed=0, scale_p=1.0, appearance=False, hair_probability=0.0,
                                 aspect_p=1.0)
    aug.compose = type(aug.compose)([t for t in aug.compose.transforms if "Color" not in type(t).__name__])
    image, mask = lesion_image()
    for _ in range(12):
        out = aug(image=image, masks=[mask])
        assert out["masks"][0].shape == out["image"].shape[:2]  # a 90-degree turn may swap the sides
        assert iou(out["masks"][0] > 0, blue(out["image"])) > 0.8


@pytest.mark.parametrize("draw", ["dark_field", "ink", "white_balance", "vignette"])
def test_appearance_artefacts_touch_only_the_image(draw):
    image, mask = lesion_image()
    lesion = mask > 0
    rng = np.random.default_rng(1)
    if draw == "dark_field":
        out = dark_field(image, lesion, rng)
        assert np.array_equal(out[lesion], image[lesion])  # the field's circle spares the lesion
        assert out[0, 0].max() <= 30 or out[-1, -1].max() <= 30 or out[0, -1].max() <= 30
    elif draw == "ink":
        out = ink_and_ruler(image, lesion, rng)
        assert np.array_equal(out[lesion], image[lesion])
    elif draw == "white_balance":
        out = white_balance(image, rng)
        assert not np.array_equal(out, image)
    else:
        out = vignette(image, rng)
        assert out[0, 0].mean() < image[0, 0].mean() and np.array_equal(out[120, 160], image[120, 160])
    assert out.shape == image.shape and out.dtype == np.uint8


def test_skin_canvas_follows_the_skin_not_the_lesion_or_dark_corners():
    image, mask = lesion_image()
    image[:30, :30] = 5  # a dark vignetted corner
    canvas = skin_canvas(image, mask > 0, (500, 600), np.random.default_rng(0))
    assert canvas.shape == (500, 600, 3)
    assert np.abs(canvas.reshape(-1, 3).mean(axis=0) - (200, 160, 140)).max() < 15
    assert not blue(canvas).any()


@pytest.mark.parametrize("target", [0.02, 0.05, 0.10])
def test_move_to_scale_maps_the_mask_exactly(target):
    image, mask = lesion_image()
    moved, moved_mask, (top, left) = move_to_scale(image, mask, target, seed=4)
    h, w = mask.shape
    assert np.array_equal(moved_mask[top:top + h, left:left + w], mask > 0)
    assert moved_mask.sum() == (mask > 0).sum()  # nothing outside the pasted image
    assert moved_mask.mean() == pytest.approx(target, rel=0.02)
    assert np.array_equal(moved[top:top + h, left:left + w][mask > 0], image[mask > 0])  # lesion pixels untouched
    assert moved.shape[0] / moved.shape[1] == pytest.approx(h / w, rel=0.01)


def test_move_to_scale_leaves_small_lesions_and_rejects_bad_input():
    image, mask = lesion_image()
    share = (mask > 0).mean()
    assert canvas_shape_for(mask.shape, mask.sum(), share * 2) == mask.shape
    with pytest.raises(ValueError, match="mask shape"):
        move_to_scale(image, mask[:-1], 0.05)
    with pytest.raises(ValueError, match="target_area"):
        move_to_scale(image, mask, 0)
    with pytest.raises(ValueError, match="offset"):
        move_to_scale(image, mask, 0.05, offset=(10 ** 6, 0))


def test_write_moved_folder(tmp_path):
    from PIL import Image
    image, mask = lesion_image()
    rows = write_moved_folder([("a", image, mask), ("b", image, mask)], str(tmp_path), 0.02, 0.10, seed=0)
    assert [r["stem"] for r in rows] == ["a", "b"]
    for r in rows:
        saved = np.asarray(Image.open(tmp_path / "masks" / f"{r['stem']}_segmentation.png")) > 0
        assert 0.02 * 0.95 <= saved.mean() <= 0.10 * 1.05
        assert saved.mean() == pytest.approx(r["share_after"], abs=1e-4)
        assert Image.open(tmp_path / "images" / f"{r['stem']}.png").size == saved.shape[::-1]
    assert (tmp_path / "moves.csv").read_text().splitlines()[0].startswith("stem,")


def test_lesion_config_anchors_cover_lesions_of_1_to_80_percent():
    """For lesions of 1-80 % of the image, any aspect 1:2-2:1, anywhere, some anchor has IoU >= 0.5 with its box."""
    from mrcnn.anchors import get_anchors
    from mrcnn.boxes import compute_overlaps
    from skinlesion.config import LesionConfig

    config = LesionConfig()
    size = config.IMAGE_MAX_DIM
    anchors = get_anchors(config, config.IMAGE_SHAPE, normalized=False)
    rng = np.random.default_rng(0)
    boxes = []
    for share in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8):
        for aspect in (0.5, 0.75, 1.0, 1.5, 2.0):
            h = np.sqrt(share * size * size / aspect)
            w = h * aspect
            if h > size or w > size:
                continue
            for _ in range(6):
                y1, x1 = rng.uniform(0, size - h), rng.uniform(0, size - w)
                boxes.append([y1, x1, y1 + h, x1 + w])
    best = compute_overlaps(np.array(boxes), anchors).max(axis=1)
    assert best.min() >= 0.5, f"worst best-anchor IoU {best.min():.2f}"


def test_cli_augmentation_reframes_real_data_but_not_the_synthetic_demo():
    from skinlesion import runs
    assert runs.augmentation_for("none") is None
    assert isinstance(runs.augmentation_for("default").scale, LesionScale)
    assert runs.augmentation_for("strong").scale.p == 0.5
    assert runs.augmentation_for("default", synthetic=True).scale is None


# ---------------------------------------------------------------- frame shape

@pytest.mark.parametrize("aspect", [2 / 3, 0.8, 1.0, 1.25, 1.5])
def test_frame_aspect_cuts_to_the_asked_shape_and_keeps_the_lesion_with_its_mask(aspect):
    image, mask = lesion_image()  # 320 x 240 (width / height 1.33), lesion box 130 x 120
    out, masks = FrameAspect(p=1.0).apply(image, [mask], aspect, np.random.default_rng(0))
    h, w = out.shape[:2]
    assert masks[0].shape == (h, w)
    assert w / h == pytest.approx(aspect, abs=0.01)
    assert h == 240 or w == 320  # the largest window of that shape
    assert masks[0].sum() == mask.sum()  # the whole lesion stays in view
    assert np.array_equal(masks[0] > 0, blue(out))  # cut exactly as the pixels


def test_aspect_window_holds_the_box_and_centres_a_box_too_long_for_it():
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, h, w = aspect_window((240, 320), (60, 100, 180, 230), 1.0, rng)
        assert (h, w) == (240, 240) and top == 0 and left <= 100 and left + w >= 230
    # A box 300 px wide in a 240 px square: centred on it.
    top, left, h, w = aspect_window((240, 400), (10, 50, 200, 350), 1.0, rng)
    assert (h, w) == (240, 240) and left == 80


def test_frame_aspect_draws_square_and_other_frames_and_leaves_the_rest():
    image, mask = lesion_image()
    frame = FrameAspect(p=0.5, square_p=0.4)
    rng = np.random.default_rng(1)
    shapes = [frame(image=image, masks=[mask], rng=rng)["image"].shape[:2] for _ in range(200)]
    unchanged = sum(s == image.shape[:2] for s in shapes) / 200
    square = sum(s[0] == s[1] for s in shapes) / 200
    assert 0.4 < unchanged < 0.65 and 0.12 < square < 0.3
    with pytest.raises(ValueError, match="aspect_range"):
        FrameAspect(aspect_range=(1.2, 1.5))


def test_training_augmentation_cuts_frames_only_for_real_data():
    assert dermoscopy_augmentation(reframe=True).aspect.p == 0.5
    assert dermoscopy_augmentation(reframe=False).aspect is None
    assert DermoscopyAugmentation().aspect is None  # fixed-size batches (the U-Net baseline) keep their size


def test_square_crop_is_exact_and_holds_the_lesion():
    image, mask = lesion_image(h=240, w=400, box=(60, 250, 180, 380))
    cut, cut_mask, (top, left) = square_crop(image, mask)
    assert cut.shape == (240, 240, 3) and top == 0
    assert np.array_equal(cut, image[:, left:left + 240]) and np.array_equal(cut_mask, mask[:, left:left + 240] > 0)
    assert cut_mask.sum() == mask.sum() and left == 400 - 240  # centred on the lesion, moved inside


def test_seeded_augmentation_repeats_exactly():
    """seed fixes every random choice (re-framing, albumentations, artefacts): the same input gives the same output."""
    image, mask = lesion_image()
    outs = []
    for _ in range(2):
        aug = dermoscopy_augmentation(strong=True, seed=3)
        outs.append([aug(image=image, masks=[mask]) for _ in range(4)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["masks"][0], b["masks"][0])
    assert any(not np.array_equal(outs[0][0]["image"], o["image"]) for o in outs[0][1:])
