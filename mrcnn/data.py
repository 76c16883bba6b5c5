"""Training inputs: load_image_gt, RPN targets, and the Keras PyDataset that batches them."""
import logging
import threading

import keras
import numpy as np

from . import anchors as anchors_lib
from .boxes import box_refinement, compute_overlaps, extract_bboxes
from .images import compose_image_meta, minimize_mask, mold_image, resize_image, resize_mask

log = logging.getLogger(__name__)


def apply_augmentation(augmentation, image, mask):
    """Run an albumentations transform on an image and its instance masks together.

    image: uint8 [H, W, 3]; mask: bool [H, W, N]. The transform is called as
    ``augmentation(image=..., masks=[...])`` so geometric changes move masks
    and pixels alike while colour changes touch only the image.
    Returns: image uint8 [H', W', 3], mask bool [H', W', N].
    """
    masks = [mask[:, :, i].astype(np.uint8) for i in range(mask.shape[-1])]
    out = augmentation(image=image, masks=masks)
    image = np.asarray(out["image"], dtype=np.uint8)
    out_masks = out.get("masks", masks)
    if len(out_masks):
        mask = np.stack([np.asarray(m) for m in out_masks], axis=-1).astype(bool)
    else:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError("augmentation changed the image and mask sizes differently")
    return image, mask


def load_image_gt(dataset, config, image_id, augmentation=None, use_mini_mask=None):
    """Image and ground truth of one dataset image, resized for the model.

    Returns: image uint8 [H, W, 3] (config.IMAGE_SHAPE), image_meta [META],
    class_ids int32 [N], bbox int32 [N, (y1, x1, y2, x2)] pixels of the resized
    image, mask bool [h, w, N] (MINI_MASK_SHAPE when mini masks are used, else
    the resized image size). Instances whose mask is empty are dropped.
    """
    if use_mini_mask is None:
        use_mini_mask = config.USE_MINI_MASK
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[:, :, None]
    if mask.shape[-1] and mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"{dataset.image_reference(image_id)}: mask size {mask.shape[:2]} "
                         f"differs from image size {image.shape[:2]}")
    original_shape = image.shape
    if augmentation is not None:
        image, mask = apply_augmentation(augmentation, image, mask)
    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    if mask.shape[-1]:
        mask = resize_mask(mask, scale, padding, crop)
    else:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    keep = np.sum(mask, axis=(0, 1)) > 0
    mask = mask[:, :, keep]
    class_ids = np.asarray(class_ids, dtype=np.int32)[keep]
    bbox = extract_bboxes(mask)
    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    active_class_ids[source_class_ids] = 1
    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
    """RPN training targets: which anchors are positive/negative and their deltas.

    anchors: [A, 4] pixels; gt_class_ids: [G] (negative = crowd); gt_boxes:
    [G, 4] pixels. An anchor is positive with IoU >= config.RPN_POSITIVE_IOU
    (Matterport: 0.7) or when it is the best anchor of a gt box, negative below
    config.RPN_NEGATIVE_IOU (0.3); at most half the sample is positive.
    Returns: rpn_match int32 [A] (1, -1, 0) and rpn_bbox float32
    [RPN_TRAIN_ANCHORS_PER_IMAGE, 4] deltas of the positives (in anchor order,
    divided by RPN_BBOX_STD_DEV, zero-padded).
    """
    sample = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((sample, 4), dtype=np.float32)
    crowd = gt_class_ids < 0
    if crowd.any():
        crowd_iou_max = np.amax(compute_overlaps(anchors, gt_boxes[crowd]), axis=1)
        no_crowd = crowd_iou_max < 0.001
        gt_class_ids, gt_boxes = gt_class_ids[~crowd], gt_boxes[~crowd]
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)
    if gt_boxes.shape[0]:
        overlaps = compute_overlaps(anchors, gt_boxes)
        anchor_best_gt = np.argmax(overlaps, axis=1)
        anchor_iou_max = overlaps[np.arange(overlaps.shape[0]), anchor_best_gt]
        rpn_match[(anchor_iou_max < config.RPN_NEGATIVE_IOU) & no_crowd] = -1
        best_per_gt = np.max(overlaps, axis=0)
        ties = np.argwhere((overlaps == best_per_gt[None, :]) & (best_per_gt[None, :] > 0))[:, 0]
        rpn_match[ties] = 1
        rpn_match[anchor_iou_max >= config.RPN_POSITIVE_IOU] = 1
    else:
        anchor_best_gt = np.zeros([anchors.shape[0]], dtype=np.int64)
        rpn_match[no_crowd] = -1
    positive = np.where(rpn_match == 1)[0]
    extra = len(positive) - sample // 2
    if extra > 0:
        rpn_match[np.random.choice(positive, extra, replace=False)] = 0
    negative = np.where(rpn_match == -1)[0]
    extra = len(negative) - (sample - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[np.random.choice(negative, extra, replace=False)] = 0
    positive = np.where(rpn_match == 1)[0]
    if positive.size:
        deltas = box_refinement(anchors[positive], gt_boxes[anchor_best_gt[positive]])
        rpn_bbox[:positive.size] = deltas / config.RPN_BBOX_STD_DEV
    return rpn_match, rpn_bbox


class DataGenerator(keras.utils.PyDataset):
    """Batches of training inputs for the training graph, built by parallel workers.

    Each item is a dict keyed by the model's input names:
    input_image [B, H, W, 3] float32 (molded), input_image_meta [B, META],
    input_rpn_match [B, A, 1], input_rpn_bbox [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4],
    input_gt_class_ids [B, MAX_GT], input_gt_boxes [B, MAX_GT, 4] pixels,
    input_gt_masks [B, h, w, MAX_GT].
    Images that fail to load are skipped (one log line each) and replaced.
    batch_size: images per item (default config.BATCH_SIZE; mrcnn.distribute
    asks for one replica's IMAGES_PER_GPU). ``last_batch_ids`` holds the
    image ids of the item built last.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, steps=None,
                 workers=None, use_multiprocessing=False, seed=None, batch_size=None):
        super().__init__(workers=config.WORKERS if workers is None else workers,
                         use_multiprocessing=use_multiprocessing, max_queue_size=8)
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.steps = steps
        self.batch_size = int(batch_size or config.BATCH_SIZE)
        self.last_batch_ids = []
        self.image_ids = np.copy(dataset.image_ids)
        if len(self.image_ids) == 0:
            raise ValueError("the training dataset holds no images; check the dataset path and subset")
        self.anchors = anchors_lib.get_anchors(config, config.IMAGE_SHAPE, normalized=False)
        self.rng = np.random.default_rng(seed)
        self.order = self._new_order()
        self.bad_ids = set()
        self._lock = threading.Lock()
        self.skipped = []

    def _new_order(self):
        ids = np.copy(self.image_ids)
        if self.shuffle:
            self.rng.shuffle(ids)
        return ids

    def __len__(self):
        if self.steps:
            return int(self.steps)
        return int(np.ceil(len(self.image_ids) / self.batch_size))

    def on_epoch_end(self):
        self.order = self._new_order()

    def _load(self, image_id):
        """load_image_gt plus RPN targets for one image; None when the image is unusable."""
        try:
            image, meta, class_ids, boxes, masks = load_image_gt(
                self.dataset, self.config, image_id, augmentation=self.augmentation)
        except (ValueError, OSError) as err:
            with self._lock:
                if image_id not in self.bad_ids:
                    self.bad_ids.add(image_id)
                    self.skipped.append({"file": self.dataset.image_reference(image_id), "reason": str(err)})
                    log.warning("skipped %s: %s", self.dataset.image_reference(image_id), err)
            return None
        if class_ids.size and not np.any(class_ids > 0):
            return None
        rpn_match, rpn_bbox = build_rpn_targets(image.shape, self.anchors, class_ids, boxes, self.config)
        return image, meta, class_ids, boxes, masks, rpn_match, rpn_bbox

    def empty_batch(self):
        """One item of zeros: the dict of arrays __getitem__ fills (shapes in the class docstring)."""
        cfg = self.config
        batch = self.batch_size
        max_gt = cfg.MAX_GT_INSTANCES
        mask_shape = tuple(cfg.MINI_MASK_SHAPE) if cfg.USE_MINI_MASK else tuple(cfg.IMAGE_SHAPE[:2])
        return {
            "input_image": np.zeros((batch,) + tuple(cfg.IMAGE_SHAPE), np.float32),
            "input_image_meta": np.zeros((batch, cfg.IMAGE_META_SIZE), np.float32),
            "input_rpn_match": np.zeros((batch, self.anchors.shape[0], 1), np.int32),
            "input_rpn_bbox": np.zeros((batch, cfg.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
            "input_gt_class_ids": np.zeros((batch, max_gt), np.int32),
            "input_gt_boxes": np.zeros((batch, max_gt, 4), np.float32),
            "input_gt_masks": np.zeros((batch,) + mask_shape + (max_gt,), np.float32),
        }

    def __getitem__(self, index):
        cfg = self.config
        batch = self.batch_size
        max_gt = cfg.MAX_GT_INSTANCES
        out = self.empty_batch()
        ids = []
        position = index * batch
        filled = 0
        attempts = 0
        while filled < batch:
            attempts += 1
            if attempts > batch + 10 * max(1, len(self.image_ids)):
                raise RuntimeError("no usable training image: every image failed to load "
                                   f"({len(self.bad_ids)} skipped); see the warnings above")
            image_id = self.order[position % len(self.order)]
            position += 1
            if image_id in self.bad_ids:
                continue
            item = self._load(image_id)
            if item is None:
                continue
            image, meta, class_ids, boxes, masks, rpn_match, rpn_bbox = item
            if boxes.shape[0] > max_gt:
                keep = np.random.choice(np.arange(boxes.shape[0]), max_gt, replace=False)
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
            count = boxes.shape[0]
            out["input_image"][filled] = mold_image(image, cfg)
            out["input_image_meta"][filled] = meta
            out["input_rpn_match"][filled, :, 0] = rpn_match
            out["input_rpn_bbox"][filled] = rpn_bbox
            out["input_gt_class_ids"][filled, :count] = class_ids
            out["input_gt_boxes"][filled, :count] = boxes
            out["input_gt_masks"][filled, :, :, :count] = masks
            ids.append(image_id)
            filled += 1
        self.last_batch_ids = ids
        return out
