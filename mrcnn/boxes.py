"""Numpy box maths: IoU, box deltas, non-max suppression, boxes from masks.

Boxes are [N, (y1, x1, y2, x2)] with y2/x2 exclusive in pixel coordinates
(Matterport's convention), or in normalized coordinates where stated.
"""
import numpy as np


def extract_bboxes(mask):
    """Bounding boxes of instance masks.

    mask: [H, W, N] bool or 0/1.
    Returns: int32 [N, (y1, x1, y2, x2)], x2/y2 one past the last pixel; an
    empty mask gives an all-zero box.
    """
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)
    for i in range(mask.shape[-1]):
        m = mask[:, :, i]
        rows = np.where(np.any(m, axis=1))[0]
        cols = np.where(np.any(m, axis=0))[0]
        if rows.size:
            boxes[i] = [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]
    return boxes


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box with many.

    box: [4] (y1, x1, y2, x2); boxes: [N, 4]; box_area: scalar; boxes_area: [N].
    Returns: float [N].
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area[:] - intersection[:]
    return intersection / np.maximum(union, 1e-12)


def compute_overlaps(boxes1, boxes2):
    """IoU matrix between two box sets.

    boxes1: [N, 4]; boxes2: [M, 4]. Returns: float [N, M].
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))
    for i in range(boxes2.shape[0]):
        overlaps[:, i] = compute_iou(boxes2[i], boxes1, area2[i], area1)
    return overlaps


def compute_overlaps_masks(masks1, masks2):
    """IoU matrix between two sets of masks.

    masks1: [H, W, N]; masks2: [H, W, M] (bool or 0/1). Returns: float [N, M].
    """
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    flat1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    flat2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    area1 = np.sum(flat1, axis=0)
    area2 = np.sum(flat2, axis=0)
    intersections = np.dot(flat1.T, flat2)
    union = area1[:, None] + area2[None, :] - intersections
    return intersections / np.maximum(union, 1e-12)


def non_max_suppression(boxes, scores, threshold):
    """Greedy NMS.

    boxes: [N, (y1, x1, y2, x2)]; scores: [N]; threshold: IoU above which the
    lower-scored box is dropped. Returns: int32 indices of kept boxes, best first.
    """
    if boxes.shape[0] == 0:
        return np.zeros([0], np.int32)
    boxes = boxes.astype(np.float64)
    y1, x1, y2, x2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (y2 - y1) * (x2 - x1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        iou = compute_iou(boxes[best], boxes[order[1:]], area[best], area[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas to boxes.

    boxes: [N, (y1, x1, y2, x2)]; deltas: [N, 4]. Returns: float [N, 4].
    """
    boxes = boxes.astype(np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas that turn box into gt_box (inverse of apply_box_deltas).

    box, gt_box: [N, (y1, x1, y2, x2)]. Returns: float32 [N, (dy, dx, dh, dw)].
    """
    box = box.astype(np.float32)
    gt_box = gt_box.astype(np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1)


def scale_boxes(boxes, factor):
    """Boxes grown (factor > 1) about their centres, clipped to the unit square.

    boxes: float [N, 4] normalized. Returns: float [N, 4]. Graph twin:
    box_graph.scale_boxes_graph (detection.DetectionBoxes uses it for the mask
    head, unmold_detections this one to paste the masks back).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    center = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * np.float32(0.5 * factor)
    return np.clip(np.concatenate([center - half, center + half], axis=1), 0.0, 1.0)


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalized boxes.

    boxes: [N, (y1, x1, y2, x2)] in pixels, y2/x2 exclusive; shape: (height, width).
    Returns: float32 [N, 4] in [0, 1] where (y2, x2) of the last pixel is 1.
    """
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes -> integer pixel boxes (inverse of norm_boxes).

    boxes: [N, 4] normalized; shape: (height, width). Returns: int32 [N, 4].
    """
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)
