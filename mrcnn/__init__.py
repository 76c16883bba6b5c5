"""Mask R-CNN for Keras 3 (TensorFlow backend) with Matterport's public API."""
import os

# TensorFlow's C++ logging floods the console with cost-model warnings on CPU;
# keep errors only unless the user asked for more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
