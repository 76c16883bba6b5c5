"""The five Mask R-CNN losses (Matterport's definitions) and weight decay.

Each returns a scalar; an empty selection (no positive anchors or ROIs in the
batch) gives 0 rather than NaN.
"""
import tensorflow as tf


def _safe_mean(values):
    """Mean of a 1-D tensor, 0 when it is empty."""
    count = tf.cast(tf.size(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def smooth_l1(y_true, y_pred):
    """Smooth-L1 (Huber with delta 1), elementwise. Shapes: [..., 4]."""
    diff = tf.abs(y_true - y_pred)
    less_than_one = tf.cast(diff < 1.0, tf.float32)
    return less_than_one * 0.5 * diff ** 2 + (1 - less_than_one) * (diff - 0.5)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """RPN anchor classifier loss over non-neutral anchors.

    rpn_match: [B, A, 1] (1 positive, -1 negative, 0 neutral);
    rpn_class_logits: [B, A, 2]. Returns: scalar.
    """
    rpn_match = tf.squeeze(rpn_match, -1)
    indices = tf.where(tf.not_equal(rpn_match, 0))
    anchor_class = tf.cast(tf.equal(tf.gather_nd(rpn_match, indices), 1), tf.int32)
    logits = tf.gather_nd(rpn_class_logits, indices)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=anchor_class, logits=logits)
    return _safe_mean(loss)


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """RPN box regression loss on positive anchors.

    target_bbox: [B, max_positives, 4] deltas of positive anchors, packed in
    anchor order and zero-padded; rpn_match: [B, A, 1]; rpn_bbox: [B, A, 4].
    Returns: scalar.
    """
    rpn_match = tf.squeeze(rpn_match, -1)
    indices = tf.where(tf.equal(rpn_match, 1))
    pred = tf.gather_nd(rpn_bbox, indices)
    counts = tf.reduce_sum(tf.cast(tf.equal(rpn_match, 1), tf.int32), axis=1)
    # Unpack the padded targets to line up with the positive anchors.
    target = tf.boolean_mask(target_bbox, tf.sequence_mask(counts, tf.shape(target_bbox)[1]))
    return _safe_mean(tf.reshape(smooth_l1(target, pred), [-1]))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids, valid_rois):
    """Classifier loss over real (non-padding) ROIs.

    target_class_ids: [B, T] int; pred_class_logits: [B, T, C];
    active_class_ids: [B, C] 1 for classes of the image's source;
    valid_rois: [B, T] bool. Predictions of classes not in the image's source
    are not penalised (Matterport's multi-source rule). Returns: scalar.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    pred_class_ids = tf.argmax(pred_class_logits, axis=2, output_type=tf.int32)
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_class_ids, batch_dims=1)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_class_ids, logits=pred_class_logits)
    weight = pred_active * tf.cast(valid_rois, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(loss * weight), tf.reduce_sum(weight))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box refinement loss on positive ROIs, for their true class.

    target_bbox: [B, T, 4]; target_class_ids: [B, T]; pred_bbox: [B, T, C, 4].
    Returns: scalar.
    """
    target_class_ids = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    target_bbox = tf.reshape(target_bbox, [-1, 4])
    pred_bbox = tf.reshape(pred_bbox, [-1, tf.shape(pred_bbox)[2], 4])
    positive = tf.where(target_class_ids > 0)[:, 0]
    target = tf.gather(target_bbox, positive)
    pred = tf.gather(tf.gather(pred_bbox, positive), tf.gather(target_class_ids, positive), batch_dims=1)
    return _safe_mean(tf.reshape(smooth_l1(target, pred), [-1]))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Binary cross-entropy of the true class's mask on positive ROIs.

    target_masks: [B, T, h, w] in {0, 1}; target_class_ids: [B, T];
    pred_masks: [B, P, h, w, C] sigmoid outputs for the first P <= T ROIs
    (the positives come first, so P may stop at the positive budget).
    Returns: scalar.
    """
    count = tf.shape(pred_masks)[1]
    target_masks = target_masks[:, :count]
    target_class_ids = target_class_ids[:, :count]
    target_class_ids = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    mask_shape = tf.shape(target_masks)
    target_masks = tf.reshape(target_masks, [-1, mask_shape[2], mask_shape[3]])
    pred_shape = tf.shape(pred_masks)
    pred_masks = tf.reshape(pred_masks, [-1, pred_shape[2], pred_shape[3], pred_shape[4]])
    pred_masks = tf.transpose(pred_masks, [0, 3, 1, 2])  # [B*T, C, h, w]
    positive = tf.where(target_class_ids > 0)[:, 0]
    y_true = tf.gather(target_masks, positive)
    y_pred = tf.gather(tf.gather(pred_masks, positive), tf.gather(target_class_ids, positive), batch_dims=1)
    eps = 1e-7
    y_pred = tf.clip_by_value(y_pred, eps, 1 - eps)
    bce = -(y_true * tf.math.log(y_pred) + (1 - y_true) * tf.math.log(1 - y_pred))
    return _safe_mean(tf.reshape(bce, [-1]))


def weight_decay_loss(trainable_weights, weight_decay):
    """L2 penalty on trainable weights except batch-norm gamma and beta.

    Matterport's form: sum over weights of decay * sum(w^2) / size(w).
    Returns: scalar.
    """
    terms = []
    for w in trainable_weights:
        name = w.path if hasattr(w, "path") else w.name
        if name.rsplit("/", 1)[-1].split(":")[0] in ("gamma", "beta"):
            continue
        value = tf.convert_to_tensor(w)
        terms.append(weight_decay * tf.reduce_sum(tf.square(value)) / tf.cast(tf.size(value), tf.float32))
    if not terms:
        return tf.constant(0.0)
    return tf.add_n(terms)
