"""Anchors: a hand-worked level, pyramid counts, backbone shapes, cached normalized anchors."""
import numpy as np
import pytest

from mrcnn import anchors as A
from mrcnn.boxes import norm_boxes
from mrcnn.config import Config


class TinyConfig(Config):
    NAME = "tiny"
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)


def centers_and_sizes(anchors):
    """[N, (y1, x1, y2, x2)] -> centres [N, (cy, cx)] and sizes [N, (h, w)]."""
    sizes = anchors[:, 2:] - anchors[:, :2]
    return anchors[:, :2] + sizes / 2, sizes


def test_generate_anchors_worked_case():
    anchors = A.generate_anchors(32, [0.5, 1, 2], (2, 3), feature_stride=16, anchor_stride=1)
    assert anchors.shape == (2 * 3 * 3, 4)
    centers, sizes = centers_and_sizes(anchors)
    # Cells in row-major order, the three ratios inside each cell.
    expected_centers = [(y, x) for y in (0, 16) for x in (0, 16, 32) for _ in range(3)]
    np.testing.assert_allclose(centers, expected_centers, atol=1e-9)
    root2 = np.sqrt(2)
    # ratio = width / height; the area stays 32 * 32.
    np.testing.assert_allclose(sizes[:3], [[32 * root2, 32 / root2], [32, 32], [32 / root2, 32 * root2]])
    np.testing.assert_allclose(anchors[1], [-16, -16, 16, 16])
    np.testing.assert_allclose(sizes[:, 0] * sizes[:, 1], 32 * 32)


def test_generate_anchors_anchor_stride_skips_cells():
    anchors = A.generate_anchors(16, [1], (4, 4), feature_stride=8, anchor_stride=2)
    assert anchors.shape == (4, 4)
    centers, sizes = centers_and_sizes(anchors)
    np.testing.assert_allclose(centers, [[0, 0], [0, 16], [16, 0], [16, 16]])
    np.testing.assert_allclose(sizes, 16)


def test_compute_backbone_shapes():
    shapes = A.compute_backbone_shapes(TinyConfig(), (128, 128, 3))
    np.testing.assert_array_equal(shapes, [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]])
    np.testing.assert_array_equal(A.compute_backbone_shapes(TinyConfig(), (100, 70, 3))[-1], [2, 2])


def test_generate_pyramid_anchors_counts_per_level():
    config = TinyConfig()
    shapes = A.compute_backbone_shapes(config, (128, 128, 3))
    anchors = A.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                                         config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    per_level = [rows * cols * 3 for rows, cols in shapes]
    assert anchors.shape == (sum(per_level), 4) == (4092, 4)
    # Level order: the first block has P2's scale, the last P6's.
    _, sizes = centers_and_sizes(anchors)
    np.testing.assert_allclose(np.sqrt(sizes[:per_level[0], 0] * sizes[:per_level[0], 1]), 8)
    np.testing.assert_allclose(np.sqrt(sizes[-per_level[-1]:, 0] * sizes[-per_level[-1]:, 1]), 128)


def test_get_anchors_cached_and_normalized():
    config = TinyConfig()
    anchors = A.get_anchors(config, (128, 128, 3))
    assert anchors.dtype == np.float32 and anchors.shape == (4092, 4)
    assert A.get_anchors(config, np.array([128, 128, 3])) is anchors  # cache hit
    pixels = A.get_anchors(config, (128, 128, 3), normalized=False)
    np.testing.assert_allclose(anchors, norm_boxes(pixels, (128, 128)), rtol=1e-5, atol=1e-6)
    centers, _ = centers_and_sizes(pixels)
    assert centers.min() >= 0 and centers.max() <= 128
    # Normalized: centres inside [0, 1]; boxes reach past the edge by at most the largest anchor.
    norm_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert norm_centers.min() >= -0.01 and norm_centers.max() <= 1.01
    assert anchors.min() >= -128 * np.sqrt(2) / 127 and anchors.max() <= 1 + 128 * np.sqrt(2) / 127


def test_get_anchors_depends_on_shape_and_scales():
    config = TinyConfig()
    small = A.get_anchors(config, (64, 64, 3))
    assert small.shape[0] == 3 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1 * 1)

    class OtherScales(TinyConfig):
        RPN_ANCHOR_SCALES = (16, 32, 64, 128, 256)

    other = A.get_anchors(OtherScales(), (128, 128, 3))
    assert other.shape == (4092, 4)
    assert not np.allclose(other, A.get_anchors(config, (128, 128, 3)))


@pytest.mark.parametrize("ratios", [[1], [0.5, 1, 2]])
def test_anchor_count_scales_with_ratios(ratios):
    anchors = A.generate_anchors(8, ratios, (5, 7), feature_stride=4, anchor_stride=1)
    assert anchors.shape == (5 * 7 * len(ratios), 4)
