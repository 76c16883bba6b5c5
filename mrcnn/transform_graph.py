"""The inference path's pre- and post-processing in TensorFlow (the twins of mrcnn.transform's numpy).

mrcnn.transform.InferenceTransform owns both and calls these for the
export (mrcnn.serving): molding for IMAGE_RESIZE_MODE "square" (the only
mode whose molded shape is fixed, so the anchors are constants) and
unmolding with the runtime threshold. The resize runs in TensorFlow as
mrcnn.images chooses it for cv2: enlarging reproduces cv2.INTER_LINEAR's
fixed-point arithmetic exactly; shrinking uses TensorFlow's area resize,
rounded to uint8, where a few pixels can differ by one grey level from
cv2.INTER_AREA's (moving scores by far less than 1e-4 on the test model),
so the export is not bit-identical to detect() there.
"""
import numpy as np
import tensorflow as tf

from .images import IMAGE_META_FIELDS, resize_image
from .transform import FALLBACK_OUTPUTS, score_floor


def square_geometry(height, width, min_dim, max_dim, min_scale):
    """Scale and window of images [height, width] in IMAGE_RESIZE_MODE "square" (as images.resize_image).

    height, width: int32 scalar tensors. Returns: scale float64 scalar,
    resized (h, w) int32 scalars and window int32 [4] (y1, x1, y2, x2) in
    the max_dim x max_dim molded image. Python's round() is half-to-even,
    like tf.round, and the arithmetic is float64 as Python's.
    """
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.constant(1.0, tf.float64)
    if min_dim:
        scale = tf.maximum(scale, min_dim / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, float(min_scale))
    long_side = tf.maximum(h, w)
    scale = tf.where(tf.round(long_side * scale) > max_dim, max_dim / long_side, scale)
    new_h = tf.cast(tf.round(h * scale), tf.int32)
    new_w = tf.cast(tf.round(w * scale), tf.int32)
    top, left = (max_dim - new_h) // 2, (max_dim - new_w) // 2
    return scale, new_h, new_w, tf.stack([top, left, top + new_h, left + new_w])


def resize_uint8(images, height, width):
    """Resize uint8 images [B, H, W, C] to [B, height, width, C] as mrcnn.images._resize does.

    Area averaging when the height shrinks, bilinear otherwise (cv2's
    INTER_AREA / INTER_LINEAR choice), rounded and clipped to 0-255; the
    same size is returned unchanged. height, width: int32 scalar tensors, or
    Python ints when the images' size is static (then the choice is made
    here and only the op needed is in the graph; TensorFlow Lite has no
    area resize). Returns: float32 [B, height, width, C] of whole grey levels.
    """
    def source():
        return tf.cast(images, tf.float32)

    def area():  # cv2 rounds an area mean half up ((sum + 2) >> 2 for a factor of 2), hence floor(x + 0.5)
        # On the uint8 images: ResizeArea reads them as they are, a float copy of a large image costs more.
        return tf.clip_by_value(tf.floor(tf.image.resize(images, [height, width], method="area") + 0.5), 0.0, 255.0)

    def bilinear():
        return tf.cast(bilinear_uint8(images, height, width), tf.float32)

    if isinstance(height, int):
        if (height, width) == tuple(images.shape[1:3]):
            return source()
        return area() if height < images.shape[1] else bilinear()
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(height, shape[1]), tf.equal(width, shape[2]))
    return tf.cond(same, source, lambda: tf.cond(height < shape[1], area, bilinear))


def _linear_taps(size, source_size, clamp_weights):
    """cv2's fixed-point INTER_LINEAR taps along one axis: (first, second source index, weights) int32 [size].

    As OpenCV computes them: source coordinate (d + 0.5) * scale - 0.5 in
    double then float, each weight rounded to 1/2048 on its own. Along x a
    coordinate past the border takes the edge pixel alone (weight 2048);
    along y only the row index is clamped, the weights stay as computed.
    """
    scale = 1.0 / (tf.cast(size, tf.float64) / tf.cast(source_size, tf.float64))
    where = tf.cast((tf.range(size, dtype=tf.float64) + 0.5) * scale - 0.5, tf.float32)
    first = tf.floor(where)
    frac = where - first
    first = tf.cast(first, tf.int32)
    if clamp_weights:
        frac = tf.where(tf.logical_or(first < 0, first >= source_size - 1), 0.0, frac)
    second = tf.clip_by_value(first + 1, 0, source_size - 1)
    first = tf.clip_by_value(first, 0, source_size - 1)
    weights = [tf.cast(tf.round(w * 2048.0), tf.int32) for w in (1.0 - frac, frac)]
    return first, second, weights[0], weights[1]


def bilinear_uint8(images, height, width):
    """Enlarge uint8 images [B, H, W, C] to [B, height, width, C] with cv2.INTER_LINEAR's integer arithmetic.

    OpenCV resizes 8-bit images in fixed point: a horizontal pass with 11-bit
    weights into int32, then a vertical pass that drops 4 bits, multiplies by
    11-bit weights keeping the high 16 bits, and rounds off the last 2. That
    rounding is reproduced here (bit-exact against opencv-python-headless on
    enlargements, tests/test_export.py), where tf.image.resize's float
    bilinear differs by one grey level in about one pixel in ten. Returns int32.
    """
    image = tf.cast(images, tf.int32)
    shape = tf.shape(images)
    x0, x1, a0, a1 = _linear_taps(width, shape[2], clamp_weights=True)
    rows = tf.gather(image, x0, axis=2) * a0[:, None] + tf.gather(image, x1, axis=2) * a1[:, None]
    y0, y1, b0, b1 = _linear_taps(height, shape[1], clamp_weights=False)
    top = (tf.gather(rows, y0, axis=1) // 16) * b0[:, None, None] // 65536
    bottom = (tf.gather(rows, y1, axis=1) // 16) * b1[:, None, None] // 65536
    return tf.clip_by_value((top + bottom + 2) // 4, 0, 255)


def shades_of_grey_graph(images, power=6):
    """Shades-of-grey colour constancy per image (mrcnn.images.shades_of_grey).

    images: float32 [B, H, W, 3] in 0-255 (padding included, as mold_image
    sees it). Returns: float32 [B, H, W, 3] clipped to [0, 255]; an image
    whose illuminant estimate is 0 in any channel is returned unchanged.
    """
    scaled = images / 255.0
    illuminant = tf.pow(tf.reduce_mean(tf.pow(scaled, float(power)), axis=[1, 2]), 1.0 / power)  # [B, 3]
    norm = tf.sqrt(tf.reduce_sum(tf.square(illuminant), axis=1, keepdims=True))
    usable = tf.logical_and(norm[:, 0] > 0, tf.reduce_all(illuminant > 1e-6, axis=1))
    gains = norm / (np.sqrt(3.0).astype(np.float32) * tf.maximum(illuminant, 1e-6))
    gains = tf.where(usable[:, None], gains, tf.ones_like(gains))
    return tf.clip_by_value(images * gains[:, None, None, :], 0.0, 255.0)


def mold_graph(images, config):
    """uint8 images [B, H, W, 3] (one size) -> the graph's inputs, as MaskRCNN.mold_inputs.

    Returns: molded float32 [B, S, S, 3] (S = IMAGE_MAX_DIM; resized, padded,
    PREPROCESS, mean pixel subtracted), image_meta float32 [B, META] (the
    fields of images.compose_image_meta, image id 0, no active classes) and
    window int32 [4] (the real image inside the molded one).
    """
    size = int(config.IMAGE_MAX_DIM)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    if images.shape[1:3].is_fully_defined():  # a fixed input size (TFLite): the geometry is a constant
        _, window, scale, _, _ = resize_image(np.zeros(tuple(images.shape[1:3]) + (3,), np.uint8),
                                              config.IMAGE_MIN_DIM, size, config.IMAGE_MIN_SCALE, "square")
        new_h, new_w = int(window[2] - window[0]), int(window[3] - window[1])
        window, scale = tf.constant(window, tf.int32), tf.constant(scale, tf.float64)
    else:
        scale, new_h, new_w, window = square_geometry(height, width, config.IMAGE_MIN_DIM, size,
                                                      config.IMAGE_MIN_SCALE)
    resized = resize_uint8(images, new_h, new_w)
    padded = tf.pad(resized, [[0, 0], [window[0], size - window[2]], [window[1], size - window[3]], [0, 0]])
    padded = tf.ensure_shape(padded, [None, size, size, 3])
    if config.PREPROCESS == "shades_of_grey":
        padded = shades_of_grey_graph(padded)
    # In float64 as numpy subtracts the float64 MEAN_PIXEL: the same float32 values as mold_image.
    molded = tf.cast(tf.cast(padded, tf.float64) - np.asarray(config.MEAN_PIXEL, np.float64), tf.float32)
    meta = {"image_id": tf.zeros([1]), "original_image_shape": tf.cast(tf.stack([height, width, 3]), tf.float32),
            "image_shape": tf.constant([size, size, 3], tf.float32), "window": tf.cast(window, tf.float32),
            "scale": tf.cast(scale, tf.float32)[None],
            "active_class_ids": tf.zeros([config.NUM_CLASSES])}
    image_meta = tf.tile(tf.concat([meta[name] for name, _ in IMAGE_META_FIELDS], axis=0)[None], [batch, 1])
    return molded, image_meta, window


def to_original_pixels(boxes, window, size, height, width):
    """Normalized molded-image boxes -> rounded pixel boxes of the original image (as unmold_detections).

    boxes: float32 [..., 4]; window: int32 [4] in the size x size molded
    image; height, width: int32 original size. Returns: float32 [..., 4]
    whole pixels (y1, x1, y2, x2), y2 / x2 exclusive.
    """
    one = tf.constant([0.0, 0.0, 1.0, 1.0])
    window = (tf.cast(window, tf.float32) - one) / float(size - 1)
    shift = tf.stack([window[0], window[1], window[0], window[1]])
    extent = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    normalized = (boxes - shift) / extent
    h, w = tf.cast(height, tf.float32) - 1.0, tf.cast(width, tf.float32) - 1.0
    return tf.round(normalized * tf.stack([h, w, h, w]) + one)


def paste_mask(mask, box, height, width, threshold):
    """One soft mask pasted at its pixel box in a full-size binary mask (images.unmold_mask).

    mask: float32 [h, w] in [0, 1]; box: float32 [4] whole pixels; height,
    width: int32 original size. Bilinear with half-pixel centres and edge
    clamping, as cv2.INTER_LINEAR. Returns: uint8 [height, width] of 0 / 1.
    """
    y1, x1, y2, x2 = tf.unstack(tf.cast(box, tf.int32))
    y1c, x1c = tf.maximum(y1, 0), tf.maximum(x1, 0)
    y2c, x2c = tf.minimum(y2, height), tf.minimum(x2, width)
    drawable = tf.logical_and(tf.logical_and(y2 > y1, x2 > x1), tf.logical_and(y2c > y1c, x2c > x1c))

    def draw():
        resized = tf.image.resize(mask[:, :, None], [y2 - y1, x2 - x1], method="bilinear")[:, :, 0]
        inside = tf.cast(resized[y1c - y1:y2c - y1, x1c - x1:x2c - x1] >= threshold, tf.uint8)
        return tf.pad(inside, [[y1c, height - y2c], [x1c, width - x2c]])

    return tf.cond(drawable, draw, lambda: tf.zeros([height, width], tf.uint8))


def select_detections(outputs, min_confidence):
    """The graph's detections a threshold keeps; with a fallback output, the fallback where none passes.

    outputs: the inference model's dict (detections [B, N, 6] with boxes
    normalized, class id, score, zero-padded; detection_probs [B, N, C];
    mrcnn_mask [B, N, m, m, C']; mask_boxes [B, N, 4]; with
    Config.DETECTION_FALLBACK also their fallback_* twins [B, 1, ...]);
    min_confidence: float32 scalar. A detection is kept when its score >
    max(min_confidence, 0) (transform.score_floor, the graph's NMS rule).
    Returns: (those four outputs, an image's fallback put in slot 0 when
    nothing of it passes, as transform.InferenceTransform.select does), keep bool [B, N].
    """
    chosen = {key: outputs[key] for key in FALLBACK_OUTPUTS}
    class_ids = tf.cast(chosen["detections"][..., 4], tf.int32)
    keep = tf.logical_and(class_ids > 0, chosen["detections"][..., 5] > score_floor(min_confidence, tf.maximum))
    if FALLBACK_OUTPUTS["detections"] in outputs:
        use = tf.logical_not(tf.reduce_any(keep, axis=1))  # [B]
        first = tf.one_hot(tf.zeros_like(class_ids[:, 0]), tf.shape(keep)[1], on_value=True, off_value=False)
        slot = tf.logical_and(first, use[:, None])  # [B, N]
        for key, fallback_key in FALLBACK_OUTPUTS.items():
            value = chosen[key]
            where = tf.reshape(slot, tf.concat([tf.shape(slot), tf.ones([value.shape.rank - 2], tf.int32)], 0))
            chosen[key] = tf.where(where, outputs[fallback_key], value)
        keep = tf.logical_or(keep, slot)
    return chosen, keep


def unmold_graph(outputs, window, height, width, min_confidence, config):
    """The graph's outputs -> the serving outputs in original pixels (MaskRCNN.unmold_detections, batched).

    outputs: the inference model's dict (see select_detections); window:
    int32 [4]; height, width: int32 original size. Kept detections move to
    the front in score order, the rest is zero; masks are pasted into the
    graph's mask_boxes. Returns dict: num_detections int32 [B], boxes float32
    [B, N, 4], class_ids int32 [B, N], scores float32 [B, N], probs float32
    [B, N, C], masks uint8 [B, N, height, width].
    """
    size = int(config.IMAGE_MAX_DIM)
    chosen, keep = select_detections(outputs, min_confidence)
    detections, probs, soft_masks = chosen["detections"], chosen["detection_probs"], chosen["mrcnn_mask"]
    class_ids = tf.cast(detections[..., 4], tf.int32)
    scores = detections[..., 5]
    boxes = to_original_pixels(detections[..., :4], window, size, height, width)
    mask_boxes = to_original_pixels(chosen["mask_boxes"], window, size, height, width)
    keep = tf.logical_and(keep, (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) > 0)
    # Stable: kept detections first, in the graph's (score) order.
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=1, stable=True)
    count = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
    slots = tf.range(tf.shape(keep)[1])[None] < count[:, None]

    def gather(x, blank=False):  # x [B, N, ...] in the new order; blank: zero past the kept count
        x = tf.gather(x, order, batch_dims=1)
        if not blank:
            return x
        kept = tf.reshape(slots, [-1, int(config.DETECTION_MAX_INSTANCES)] + [1] * (x.shape.rank - 2))
        return tf.where(kept, x, tf.zeros_like(x))

    class_ids, scores, boxes, probs = (gather(x, blank=True) for x in (class_ids, scores, boxes, probs))
    mask_boxes, soft_masks = gather(mask_boxes), gather(soft_masks)
    own = tf.gather(tf.transpose(soft_masks, [0, 1, 4, 2, 3]), tf.maximum(class_ids, 0), batch_dims=2)  # [B, N, m, m]
    n = tf.shape(own)[1]
    flat = (tf.reshape(own, tf.concat([[-1], tf.shape(own)[2:]], 0)), tf.reshape(mask_boxes, [-1, 4]),
            tf.reshape(slots, [-1]))
    masks = tf.map_fn(
        lambda a: tf.cond(a[2], lambda: paste_mask(a[0], a[1], height, width, config.DETECTION_MASK_THRESHOLD),
                          lambda: tf.zeros([height, width], tf.uint8)),
        flat, fn_output_signature=tf.TensorSpec([None, None], tf.uint8))
    masks = tf.reshape(masks, tf.stack([-1, n, height, width]))
    return {"num_detections": count, "boxes": boxes, "class_ids": class_ids, "scores": scores,
            "probs": probs, "masks": masks}
