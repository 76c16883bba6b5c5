"""Mask R-CNN for Keras 3 (TensorFlow backend) with Matterport's public API."""
import os

# TensorFlow's C++ logging floods the console with cost-model warnings on CPU;
# keep errors only unless the user asked for more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Settings TensorFlow reads when it is imported (oneDNN, the allocator) are
# decided here, before any mrcnn module imports it; lesions.py calls
# runtime.configure(mode) even earlier, with the mode it runs.
from . import runtime as _runtime  # noqa: E402

_runtime.configure()
