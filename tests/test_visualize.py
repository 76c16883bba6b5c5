"""Display helpers: every figure saves a PNG headless; draw_overlay paints where it should."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn import visualize  # noqa: E402

CLASS_NAMES = ["BG", "melanoma", "nevus"]


@pytest.fixture
def scene():
    """64x80 image with two square instances. Returns: image, boxes [2, 4], masks [64, 80, 2], class_ids."""
    image = np.full((64, 80, 3), 90, dtype=np.uint8)
    masks = np.zeros((64, 80, 2), dtype=bool)
    masks[10:30, 10:30, 0] = True
    masks[35:60, 40:75, 1] = True
    boxes = np.array([[10, 10, 30, 30], [35, 40, 60, 75]])
    return image, boxes, masks, np.array([1, 2])


def assert_png(path):
    assert os.path.isfile(path) and os.path.getsize(path) > 100
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_random_colors_distinct_and_in_range():
    colors = visualize.random_colors(6)
    assert len(colors) == 6 and len(set(colors)) == 6
    assert all(0 <= c <= 1 for color in colors for c in color)
    assert visualize.random_colors(6) == colors  # reproducible figures
    assert max(visualize.random_colors(3, bright=False)[0]) == pytest.approx(0.7)


def test_apply_mask_tints_only_masked_pixels():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    result = visualize.apply_mask(image, mask, (1.0, 0.0, 0.0), alpha=0.5)
    assert result is image
    assert result[1, 1, 0] == 127 and result[1, 1, 1] == 0
    assert result[0, 0].sum() == 0


def test_display_instances_saves_png(tmp_path, scene):
    image, boxes, masks, class_ids = scene
    path = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores=[0.9, 0.8],
                                       title="t", figsize=(3, 3), path=tmp_path / "sub" / "inst.png")
    assert_png(path)
    assert "matplotlib.pyplot" not in sys.modules or not __import__("matplotlib.pyplot").pyplot.get_fignums()
    assert_png(visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                           captions=["a", "b"], figsize=(3, 3), path=tmp_path / "c.png"))
    assert_png(visualize.display_instances(image, np.zeros((0, 4)), np.zeros((64, 80, 0), bool), [],
                                           CLASS_NAMES, figsize=(3, 3), path=tmp_path / "empty.png"))
    with pytest.raises(ValueError, match="2 boxes"):
        visualize.display_instances(image, boxes, masks[:, :, :1], class_ids, CLASS_NAMES,
                                    path=tmp_path / "bad.png")


def test_display_instances_on_caller_axes(tmp_path, scene):
    from matplotlib.figure import Figure
    image, boxes, masks, class_ids = scene
    fig = Figure(figsize=(3, 3))
    ax = fig.add_subplot(1, 1, 1)
    assert visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax) is None
    assert len(ax.patches) >= 2


def test_display_images_and_top_masks(tmp_path, scene):
    image, _, masks, class_ids = scene
    assert_png(visualize.display_images([image, masks[:, :, 0]], titles=["a", "b"], cols=2,
                                        path=tmp_path / "grid.png"))
    assert_png(visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=2,
                                           path=tmp_path / "top.png"))


def test_draw_boxes(tmp_path, scene):
    image, boxes, masks, _ = scene
    refined = boxes + np.array([2, 2, -2, -2])
    assert_png(visualize.draw_boxes(image, boxes=boxes, refined_boxes=refined, masks=masks,
                                    captions=["p1", "p2"], visibilities=[2, 1], title="rois",
                                    path=tmp_path / "boxes.png"))
    assert_png(visualize.draw_boxes(image, refined_boxes=refined, path=tmp_path / "refined.png"))


def test_plot_precision_recall_and_overlaps(tmp_path):
    assert_png(visualize.plot_precision_recall(0.75, np.array([1, 1, 0.5, 0.5]), np.array([0, 0.5, 0.5, 1]),
                                               path=tmp_path / "pr.png"))
    overlaps = np.array([[0.8, 0.1], [0.2, 0.6], [0.0, 0.0]])
    assert_png(visualize.plot_overlaps([1, 2], [1, 1, 2], [0.9, 0.7, 0.3], overlaps, CLASS_NAMES,
                                       path=tmp_path / "overlaps.png"))


def test_display_table_prints_or_saves(tmp_path, capsys):
    table = [["name", "value"], ["jaccard", 0.81], ["dice", 0.9]]
    text = visualize.display_table(table)
    assert "jaccard" in capsys.readouterr().out and text.splitlines()[1].startswith("----")
    visualize.display_table(table, path=tmp_path / "table.png")
    assert_png(tmp_path / "table.png")


def test_display_weight_stats_flags_bad_weights(tmp_path):
    import keras
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, keras.layers.Dense(2, name="inner_dense")(inner_in), name="sub")
    image = keras.Input((3,))
    model = keras.Model(image, keras.layers.Dense(1, name="head")(inner(image)))
    kernel = model.get_layer("head").kernel
    kernel.assign(np.array([[np.nan], [5000.0]], dtype="float32"))
    stats = visualize.display_weight_stats(model, path=tmp_path / "weights.png")
    assert_png(tmp_path / "weights.png")
    by_layer = {(row["layer"], row["weight"].rsplit("/", 1)[-1]): row for row in stats}
    assert ("inner_dense", "kernel") in by_layer  # nested model reached
    assert set(by_layer[("head", "kernel")]["flags"]) == {"NaN", "exploding"}
    assert by_layer[("head", "bias")]["flags"] == []
    assert by_layer[("inner_dense", "kernel")]["shape"] == (3, 2)


def test_draw_overlay_paints_inside_mask_not_far_outside(scene):
    image, boxes, masks, _ = scene
    image = np.full((120, 160, 3), 90, dtype=np.uint8)
    masks = np.zeros((120, 160, 1), dtype=bool)
    masks[50:90, 60:110, 0] = True
    boxes = np.array([[50, 60, 90, 110]])
    out = visualize.draw_overlay(image, masks, boxes, ["melanoma 0.93"], colors=[(1.0, 0.0, 0.0)])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.all(out[60:80, 70:100, 0] > image[60:80, 70:100, 0])  # red tint inside
    assert np.all(out[60:80, 70:100, 1] < image[60:80, 70:100, 1])
    changed = np.any(out != image, axis=2)
    near = np.zeros_like(changed)
    near[20:95, 55:200] = True  # box, contour and caption above the box
    assert not np.any(changed & ~near)
    assert np.any(changed[30:50, 60:110])  # caption drawn above the box
    assert np.array_equal(image, np.full((120, 160, 3), 90, dtype=np.uint8))  # input untouched


def test_draw_overlay_edge_cases():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    empty = visualize.draw_overlay(image, np.zeros((40, 40, 0), bool), np.zeros((0, 4)), [])
    assert np.array_equal(empty, image)
    masks = np.zeros((40, 40, 1), dtype=bool)
    masks[0:10, 0:10] = True
    out = visualize.draw_overlay(image, masks, np.array([[0, 0, 10, 10]]), ["top-left caption"])
    assert out[5, 5].any()  # caption moved inside the image when there is no room above
