"""Compute precision: float32 everywhere, or bfloat16 convolutions with float32 geometry.

``Config.COMPUTE_DTYPE = "auto"`` (the default) is bfloat16 where the hardware
executes it natively and float32 elsewhere (mrcnn.runtime decides).
``"bfloat16"`` builds the backbone, FPN, RPN conv and
head convolutions under Keras' ``mixed_bfloat16`` policy: variables stay
float32 (so checkpoints and ``mask_rcnn_coco.h5`` load unchanged), the
arithmetic runs in bfloat16, which CPUs with AVX512_BF16 / AMX (and GPUs)
execute at two or more times the float32 rate. Everything that handles
coordinates (anchors, proposals, ROIAlign, targets, detection) and the final
prediction layers stay float32: bfloat16 has an 8-bit mantissa, so a
normalized box coordinate near 1 would be off by up to 1/256 of the image.
"""
import contextlib

import keras

from .config import COMPUTE_DTYPES
from .runtime import resolve_compute_dtype

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def compute_dtype_scope(compute_dtype):
    """Layers created inside use the policy for compute_dtype ("auto", "float32" or "bfloat16").

    "auto" resolves per machine (mrcnn.runtime.resolve_compute_dtype). It sets Keras' process-wide dtype policy for the duration (Keras has no
    per-thread one): do not build two models in different threads at once.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"Config.COMPUTE_DTYPE: must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    compute_dtype = resolve_compute_dtype(compute_dtype)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[compute_dtype])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class Float32Layer(keras.layers.Layer):
    """Base of the custom graph layers: float32 whatever the global policy.

    Floating inputs arriving in bfloat16 are cast to float32 by Keras before
    call(); pass dtype=... explicitly to override.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
