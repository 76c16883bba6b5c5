"""Install the mrcnn and skinlesion packages and the `lesions` console script."""
from setuptools import find_packages, setup

setup(
    name="skinlesion-maskrcnn",
    version="0.1.0",
    description="Skin-lesion detection, segmentation and classification with a Keras 3 Mask R-CNN",
    packages=find_packages(include=["mrcnn", "mrcnn.*", "skinlesion", "skinlesion.*"]),
    py_modules=["lesions"],
    python_requires=">=3.11",
    entry_points={"console_scripts": ["lesions=lesions:main"]},
)
