"""Attribute masks as Mask R-CNN instances (``classes="isic2018_attributes"``).

Each attribute mask of an image (ISIC 2018 Task 2: globules, milia-like
cysts, negative network, pigment network, streaks) is split into connected
components (8-connectivity, cv2.connectedComponentsWithStats); each
component of at least MIN_COMPONENT_PIXELS pixels is one instance whose class
is that attribute. Smaller components are dropped: at the resolution the
model sees (256 px from images of about 1000 px) they are under a pixel and
would become empty instances, which load_image_gt drops anyway.

An image whose attribute masks are all empty loads with zero instances.
mrcnn.data's training generator keeps such an image: with no ground-truth
box every anchor is negative (build_rpn_targets), so it trains the RPN and
the classifier on background; it does not skip it as Matterport's original
generator did. An attribute whose mask was missing or unusable at scan time
is unknown, not absent; it gives no instance, which training cannot tell
from absent, so such images are listed by the scan's warning lines.

Images can hold more components than LesionConfig.MAX_GT_INSTANCES (4, set
for one lesion per image); the training generator then keeps a random
subset of them per step. Raise MAX_GT_INSTANCES (``--config
MAX_GT_INSTANCES=32``) for attribute training.
"""
import os

import numpy as np

from skinlesion import schemes
from skinlesion.layouts import DatasetError, read_mask_bool

MIN_COMPONENT_PIXELS = 10
# The layout that has attribute masks, per attribute scheme (LesionDataset picks it when none is given).
ATTRIBUTE_LAYOUTS = {"isic2018_attributes": "isic2018_task2"}


def components(mask, min_pixels=MIN_COMPONENT_PIXELS):
    """The connected components (8-connectivity) of a mask with at least ``min_pixels`` pixels.

    mask: bool [H, W]. Returns bool [H, W, N], components in label order
    (cv2's raster order of first pixels); N = 0 when none is large enough.
    """
    import cv2
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= min_pixels]
    if not keep:
        return np.zeros(mask.shape + (0,), bool)
    return np.stack([labels == label for label in keep], axis=-1)


def attribute_instances(info, scheme, min_pixels=MIN_COMPONENT_PIXELS):
    """The instances of one image's attribute masks: (bool [H, W, N], int32 [N] class ids).

    info: the image's LesionDataset image_info (``attribute_masks`` {attribute:
    path}, ``width``, ``height``, ``path``). scheme: an attribute scheme;
    class id = 1 + the attribute's position in its class names. N may be 0.
    Raises ValueError naming the mask file when one cannot be decoded or its
    size differs from the image's.
    """
    names = schemes.class_names(scheme)
    shape = (info["height"], info["width"])
    stacks, class_ids = [np.zeros(shape + (0,), bool)], []
    for attribute, path in sorted((info.get("attribute_masks") or {}).items(), key=lambda kv: names.index(kv[0])):
        mask = read_mask_bool(path)
        if mask.shape != shape:
            raise ValueError(f"{path}: attribute mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                             f"size {info['width']}x{info['height']} of {info['path']}")
        pieces = components(mask, min_pixels)
        stacks.append(pieces)
        class_ids += [names.index(attribute) + 1] * pieces.shape[-1]
    return np.concatenate(stacks, axis=-1), np.array(class_ids, np.int32)


def require_attribute_masks(scheme, records, layout_name, root, expected):
    """Raise DatasetError unless some record of the scan has attribute masks for ``scheme``."""
    if not any(record.attribute_masks for record in records):
        raise DatasetError(f"{root}: classes={scheme!r} needs attribute masks, but the {layout_name} dataset here "
                           f"has none. Expected the {ATTRIBUTE_LAYOUTS[scheme]} layout: {expected}")


def attribute_entry_fields(record, scheme):
    """image_info fields of an attribute-scheme image: no single class; the attributes it holds."""
    present = [name for name in schemes.class_names(scheme) if (record.criteria or {}).get(f"task2_{name}")]
    return {"label": None, "class_id": None, "attribute_masks": dict(record.attribute_masks or {}),
            "attributes_present": present}


def write_attribute_predictions(folder, stem, result, class_names):
    """Write one image's predicted attribute masks in the ISIC 2018 Task 2 format; returns the paths.

    folder: output folder (made); stem: the image's name (ISIC_xxxxxxx);
    result: detect()'s dict (masks bool [H, W, N], class_ids [N]);
    class_names: "BG" then the attributes. Each attribute gets
    ``<stem>_attribute_<name>.png``, mode L, 0/255, the union of its class's
    detections (all zero when none), as the challenge asks for every image
    and attribute.
    """
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    masks, class_ids = np.asarray(result["masks"], bool), np.asarray(result["class_ids"])
    paths = []
    for k, name in enumerate(class_names):
        if not k:
            continue
        union = masks[..., class_ids == k].any(axis=-1)
        path = os.path.join(folder, f"{stem}_attribute_{name}.png")
        Image.fromarray(union.astype(np.uint8) * 255).save(path)
        paths.append(path)
    return paths
