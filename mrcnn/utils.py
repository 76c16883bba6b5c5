"""Matterport's ``mrcnn.utils`` namespace, re-exported from the focused modules."""
from .anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors  # noqa: F401
from .boxes import (apply_box_deltas, box_refinement, compute_iou, compute_overlaps,  # noqa: F401
                    compute_overlaps_masks, denorm_boxes, extract_bboxes, non_max_suppression, norm_boxes)
from .dataset import Dataset  # noqa: F401
from .images import (compose_image_meta, expand_mask, minimize_mask, mold_image,  # noqa: F401
                     parse_image_meta, resize_image, resize_mask, unmold_image, unmold_mask)

try:  # metrics.py is optional at import time so a partial checkout still imports
    from .metrics import (compute_ap, compute_ap_range, compute_matches, compute_recall,  # noqa: F401
                          trim_zeros)
except ImportError:  # pragma: no cover
    pass


def download_trained_weights(coco_model_path, verbose=1):
    """Download Matterport's COCO weights to coco_model_path (fails fast offline)."""
    import os
    import shutil
    from .weights import download_weights
    path = download_weights("coco", os.path.dirname(os.path.abspath(coco_model_path)) or ".")
    if os.path.abspath(path) != os.path.abspath(coco_model_path):
        shutil.copyfile(path, coco_model_path)
    return coco_model_path
