"""Image and mask geometry: resize modes, molding, mini-masks, image meta.

All resizes keep the aspect ratio. ``window`` is the (y1, x1, y2, x2) pixel
area of the resized image that holds the real picture (the rest is padding).
"""
import cv2
import numpy as np



def _resize(image, height, width, nearest=False):
    """Resize [H, W] or [H, W, C] to (height, width); cv2 handles up to 512 channels.

    Bool and uint8 arrays keep their dtype.
    """
    if image.shape[0] == height and image.shape[1] == width:
        return image.copy()
    interp = cv2.INTER_NEAREST if nearest else (
        cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_LINEAR)
    dtype = image.dtype
    work = image.astype(np.uint8) if dtype == bool else image
    if work.ndim == 3 and work.shape[2] == 0:
        return np.zeros((height, width, 0), dtype=dtype)
    chunks = []
    channels = work.shape[2] if work.ndim == 3 else None
    if channels is None:
        out = cv2.resize(work, (width, height), interpolation=interp)
    else:
        for start in range(0, channels, 512):
            part = cv2.resize(np.ascontiguousarray(work[:, :, start:start + 512]), (width, height),
                              interpolation=interp)
            if part.ndim == 2:
                part = part[:, :, None]
            chunks.append(part)
        out = np.concatenate(chunks, axis=2)
    return out.astype(bool) if dtype == bool else out.astype(dtype)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """Resize an image keeping its aspect ratio, as Matterport's modes do.

    image: [H, W, C] uint8.
    mode: "none" (unchanged), "square" (scale so the long side is max_dim and
        the short side at least min_dim, then pad to max_dim x max_dim),
        "pad64" (scale up to min_dim, pad each side to a multiple of 64),
        "crop" (scale to at least min_dim, random min_dim x min_dim crop).
    Returns: image [h, w, C] uint8, window (y1, x1, y2, x2), scale (float),
        padding [(top, bottom), (left, right), (0, 0)], crop (y, x, h, w) or None.
    """
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max
    if scale != 1:
        image = _resize(image, round(h * scale), round(w * scale))

    if mode == "square":
        h, w = image.shape[:2]
        top_pad = (max_dim - h) // 2
        bottom_pad = max_dim - h - top_pad
        left_pad = (max_dim - w) // 2
        right_pad = max_dim - w - left_pad
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "pad64":
        h, w = image.shape[:2]
        assert min_dim % 64 == 0, "Minimum dimension must be a multiple of 64"
        if h % 64 > 0:
            max_h = h - (h % 64) + 64
            top_pad = (max_h - h) // 2
            bottom_pad = max_h - h - top_pad
        else:
            top_pad = bottom_pad = 0
        if w % 64 > 0:
            max_w = w - (w % 64) + 64
            left_pad = (max_w - w) // 2
            right_pad = max_w - w - left_pad
        else:
            left_pad = right_pad = 0
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "crop":
        h, w = image.shape[:2]
        y = np.random.randint(0, (h - min_dim) + 1)
        x = np.random.randint(0, (w - min_dim) + 1)
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    else:
        raise ValueError(f"Mode {mode} not supported")
    return image.astype(image_dtype), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    """Resize masks with the scale and padding resize_image used.

    mask: [H, W, N] bool. Returns: bool [h, w, N].
    """
    h, w = mask.shape[:2]
    new_h, new_w = round(h * scale), round(w * scale)
    mask = _resize(mask.astype(np.uint8), new_h, new_w, nearest=True)
    if mask.ndim == 2:
        mask = mask[:, :, None]
    if crop is not None:
        y, x, ch, cw = crop
        mask = mask[y:y + ch, x:x + cw]
    else:
        mask = np.pad(mask, padding, mode="constant", constant_values=0)
    return mask.astype(bool)


def minimize_mask(bbox, mask, mini_shape):
    """Crop each mask to its box and resize to mini_shape (saves memory).

    bbox: [N, (y1, x1, y2, x2)] pixels; mask: [H, W, N]; mini_shape: (h, w).
    Returns: bool [h, w, N].
    """
    mini_mask = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        m = mask[y1:y2, x1:x2, i].astype(np.float32)
        if m.size == 0:
            continue
        m = cv2.resize(m, (mini_shape[1], mini_shape[0]), interpolation=cv2.INTER_LINEAR)
        mini_mask[:, :, i] = np.around(m).astype(bool)
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Paste mini masks back at their boxes in a full-size image (inverse of minimize_mask).

    bbox: [N, 4] pixels; mini_mask: [h, w, N]; image_shape: (H, W, ...).
    Returns: bool [H, W, N].
    """
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        h, w = y2 - y1, x2 - x1
        if h <= 0 or w <= 0:
            continue
        m = cv2.resize(mini_mask[:, :, i].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        mask[y1:y2, x1:x2, i] = np.around(m).astype(bool)
    return mask


def unmold_mask(mask, bbox, image_shape, threshold=0.5):
    """Paste one predicted soft mask into a full-size binary mask.

    mask: [h, w] float in [0, 1] (the mask head's output); bbox: (y1, x1, y2, x2)
    pixels; image_shape: (H, W, ...); threshold: probability at or above which
    a pixel is in the mask (Matterport: 0.5). Returns: bool [H, W].
    """
    y1, x1, y2, x2 = [int(v) for v in bbox]
    full_mask = np.zeros(image_shape[:2], dtype=bool)
    y1c, x1c = max(y1, 0), max(x1, 0)
    y2c, x2c = min(y2, image_shape[0]), min(x2, image_shape[1])
    if y2 - y1 <= 0 or x2 - x1 <= 0 or y2c <= y1c or x2c <= x1c:
        return full_mask
    resized = cv2.resize(mask.astype(np.float32), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    resized = resized >= threshold
    full_mask[y1c:y2c, x1c:x2c] = resized[y1c - y1:y2c - y1, x1c - x1:x2c - x1]
    return full_mask


def shades_of_grey(image, power=6):
    """Colour constancy by the shades-of-grey assumption (Finlayson and Trezzi, 2004).

    image: uint8 or float RGB [H, W, 3] (0-255). The illuminant of channel c is
    estimated as the Minkowski p-norm mean (mean(I_c ** p)) ** (1 / p); each
    channel is scaled so the estimate becomes neutral grey at the same norm:
    gain_c = ||e|| / (sqrt(3) * e_c). p = 1 is grey world, p -> inf max-RGB; p = 6
    is what ISIC 2017-2018 entries used. Zero padding scales every channel's
    estimate alike, so it does not change the gains.
    Returns: float32 [H, W, 3] clipped to [0, 255].
    """
    img = np.asarray(image, dtype=np.float32)
    scaled = img / 255.0
    illuminant = np.power(np.mean(np.power(scaled, power), axis=(0, 1)), 1.0 / power)
    norm = float(np.sqrt(np.sum(illuminant ** 2)))
    if norm <= 0 or np.any(illuminant <= 1e-6):
        return img.copy()
    gains = norm / (np.sqrt(3.0) * illuminant)
    return np.clip(img * gains, 0, 255).astype(np.float32)


def mold_image(images, config):
    """Preprocess (config.PREPROCESS) and subtract the mean pixel.

    images: uint8 RGB [H, W, 3] (one image when PREPROCESS is not "none") or
    [..., 3]. Returns: float32, same shape.
    """
    if config.PREPROCESS == "shades_of_grey":
        images = shades_of_grey(images)
    return (images.astype(np.float32) - config.MEAN_PIXEL).astype(np.float32)


def unmold_image(normalized_images, config):
    """Add the mean pixel back: float32 [..., 3] -> uint8 [..., 3]."""
    # Round, not truncate: float32 molding leaves values like 4.9999 for pixel 5.
    return np.clip(np.round(normalized_images + config.MEAN_PIXEL), 0, 255).astype(np.uint8)


# The image meta vector, field by field: (name, length); active_class_ids takes
# the rest (NUM_CLASSES). Read fields with image_meta_field, never by position.
IMAGE_META_FIELDS = (("image_id", 1), ("original_image_shape", 3), ("image_shape", 3), ("window", 4),
                     ("scale", 1), ("active_class_ids", None))


def image_meta_slices():
    """{field name: slice of the meta vector} for IMAGE_META_FIELDS (the last field runs to the end)."""
    slices, start = {}, 0
    for name, length in IMAGE_META_FIELDS:
        slices[name] = slice(start, None if length is None else start + length)
        start += length or 0
    return slices


def image_meta_field(meta, name):
    """One named field of image metas: meta [..., META] (numpy array or tf tensor) -> [..., length].

    Works on both because it only slices the last axis; scalar fields
    (image_id, scale) keep a last axis of length 1.
    """
    try:
        where = image_meta_slices()[name]
    except KeyError:
        raise KeyError(f"image meta has no field {name!r}; fields: "
                       f"{', '.join(n for n, _ in IMAGE_META_FIELDS)}") from None
    return meta[..., where]


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active_class_ids):
    """Pack per-image attributes into one float vector (layout: IMAGE_META_FIELDS).

    Returns: float32 [1 + 3 + 3 + 4 + 1 + NUM_CLASSES] =
        image_id, original (H, W, C), resized (H, W, C), window (y1, x1, y2, x2),
        scale, active class ids (1 for classes the image's source has).
    """
    values = {"image_id": [image_id], "original_image_shape": list(original_image_shape),
              "image_shape": list(image_shape), "window": list(window), "scale": [scale],
              "active_class_ids": list(active_class_ids)}
    return np.array([v for name, _ in IMAGE_META_FIELDS for v in values[name]], dtype=np.float32)


def parse_image_meta(meta):
    """Unpack image meta vectors [batch, META] into a dict of numpy arrays by field name.

    image_id int32 [batch], original_image_shape / image_shape int32 [batch, 3],
    window int32 [batch, 4], scale float32 [batch], active_class_ids int32 [batch, C].
    """
    meta = np.asarray(meta)
    parsed = {}
    for name, _ in IMAGE_META_FIELDS:
        value = image_meta_field(meta, name)
        if name in ("image_id", "scale"):
            value = value[..., 0]
        parsed[name] = value.astype(np.float32 if name == "scale" else np.int32)
    return parsed
