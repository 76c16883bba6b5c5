"""A tiny synthetic "shapes" dataset and config for fast mrcnn tests.

Import from tests:  ``from mrcnn_shapes import ShapesConfig, ShapesDataset, make_shapes``
(pytest puts ``tests/`` on sys.path through rootdir-relative imports; the
helper ``make_shapes`` builds and prepares a dataset in one call).

Images are drawn with OpenCV: squares (class 1) and circles (class 2) on a flat
background, deterministic from a seed. Masks are exact (later shapes occlude
earlier ones), so targets can be checked pixel for pixel.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.dataset import Dataset  # noqa: E402

SQUARE, CIRCLE = 1, 2
COLOURS = {SQUARE: (200, 80, 40), CIRCLE: (40, 180, 220)}


class ShapesConfig(Config):
    """Smallest config that still builds the full graph: 64 px, resnet50, thin FPN/heads."""

    NAME = "shapes"
    NUM_CLASSES = 3  # background, square, circle
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 64  # the 256-channel head was 60 % of a 64 px training step
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    LEARNING_RATE = 0.01
    TRAIN_BN = True
    WORKERS = 1
    # Tests say which precision they check: "auto" would train the learning
    # test in bfloat16 on CPUs with AVX512_BF16 and in float32 elsewhere.
    COMPUTE_DTYPE = "float32"
    VERBOSE = 0


class ShapesInferenceConfig(ShapesConfig):
    """Inference twin: one image per batch, every detection kept."""

    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.0


class ShapesDataset(Dataset):
    """Squares and circles; ``load(count, height, width, seed)`` registers the images."""

    def load(self, count, height=64, width=64, seed=0, max_shapes=2, separate=False):
        """Register `count` images of size (height, width) with 1..max_shapes shapes each.

        separate: every shape's square lies at least 3 px from the squares of
        the shapes before it (its position is drawn again, up to 50 times,
        else the shape is left out). Overlapping shapes of one class are one
        blob of one colour, which no model can split, so a learning test
        scored on them measures those draws more than the learning.
        """
        self.add_class("shapes", SQUARE, "square")
        self.add_class("shapes", CIRCLE, "circle")
        rng = np.random.default_rng(seed)
        for i in range(count):
            shapes = []
            for _ in range(int(rng.integers(1, max_shapes + 1))):
                class_id = int(rng.integers(1, 3))
                half = int(rng.integers(6, max(7, min(height, width) // 4)))
                for _attempt in range(50 if separate else 1):
                    y = int(rng.integers(half, height - half))
                    x = int(rng.integers(half, width - half))
                    if not separate or all(max(abs(y - y0), abs(x - x0)) >= half + half0 + 3
                                           for _, y0, x0, half0 in shapes):
                        shapes.append((class_id, y, x, half))
                        break
            self.add_image("shapes", i, path=f"shapes://{i}", shapes=shapes, height=height, width=width)
        return self

    @staticmethod
    def _draw(canvas, class_id, y, x, half, colour):
        if class_id == SQUARE:
            cv2.rectangle(canvas, (x - half, y - half), (x + half, y + half), colour, -1)
        else:
            cv2.circle(canvas, (x, y), half, colour, -1)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.full((info["height"], info["width"], 3), 60, np.uint8)
        for class_id, y, x, half in info["shapes"]:
            self._draw(image, class_id, y, x, half, COLOURS[class_id])
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        shapes = info["shapes"]
        masks = np.zeros((info["height"], info["width"], len(shapes)), np.uint8)
        for j, (class_id, y, x, half) in enumerate(shapes):
            canvas = np.zeros((info["height"], info["width"]), np.uint8)
            self._draw(canvas, class_id, y, x, half, 1)
            masks[:, :, j] = canvas
        masks = masks.astype(bool)
        for j in range(len(shapes) - 1):  # later shapes are drawn on top
            masks[:, :, j] &= ~np.any(masks[:, :, j + 1:], axis=2)
        return masks, np.array([s[0] for s in shapes], np.int32)

    def image_reference(self, image_id):
        return self.image_info[image_id]["path"]


def make_shapes(count=6, height=64, width=64, seed=0, max_shapes=2):
    """A prepared ShapesDataset."""
    dataset = ShapesDataset()
    dataset.load(count, height=height, width=width, seed=seed, max_shapes=max_shapes)
    dataset.prepare()
    return dataset
