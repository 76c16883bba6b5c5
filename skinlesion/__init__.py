"""skinlesion: the skin-lesion domain on top of mrcnn.

Public entry points::

    from skinlesion import LesionConfig, LesionDataset
    config = LesionConfig(classes="isic2017")
    dataset = LesionDataset()
    summary = dataset.load("/data/ISIC2017", "train", classes="isic2017")

Also: SCHEMES (class scheme name -> class names), the synthetic dermoscopy
generator (generate, write_folder, write_samples, plan_diagnoses), the split
helpers (grouped_split, assign_subsets) and the errors DatasetError /
SchemeError (both ValueError subclasses).
"""
from skinlesion.config import LesionConfig
from skinlesion.dataset import LesionDataset
from skinlesion.layouts import DatasetError, read_mask_bool
from skinlesion.schemes import SCHEMES, SchemeError
from skinlesion.splits import assign_subsets, grouped_split
from skinlesion.synthetic import (SYNTHETIC_DIAGNOSES, generate, plan_diagnoses, write_folder,
                                  write_samples)
from skinlesion import synthetic

__all__ = [
    "LesionConfig", "LesionDataset", "DatasetError", "SchemeError", "SCHEMES", "read_mask_bool",
    "assign_subsets", "grouped_split", "SYNTHETIC_DIAGNOSES", "generate", "plan_diagnoses",
    "write_folder", "write_samples", "synthetic",
]
