"""ISIC challenge scoring: Task 1 segmentation, Task 2 attributes and Task 3 / Part 3 classification.

    from skinlesion import scoring
    scoring.score_mask_folders(truth_dir, pred_dir)          # Task 1
    scoring.task2_jaccard((truth_dir, pred_dir))             # Task 2 (ISIC 2018 attribute masks)
    scoring.score_classification_files(truth_csv, pred_csv)  # Task 3

The numbers agree with the official scorer, ``isic-challenge-scoring`` 5.6.0
(checked in tests/test_scoring.py and tests/test_scoring_attributes.py). The
tasks live in their own modules, each with its conventions in its
docstring: skinlesion.scoring_segmentation (lesion masks),
skinlesion.scoring_attributes (Task 2 attribute masks) and
skinlesion.scoring_classification (class probabilities); this module is
the one place callers import them from.
"""
from skinlesion.scoring_attributes import (TASK2_FILE_PATTERN, AttributeTotals, Task2Scorer, score_attribute_folders,
                                           task2_jaccard)
from skinlesion.scoring_classification import (auc_above_sensitivity, balanced_accuracy,
                                               read_probability_csv, score_classification,
                                               score_classification_files)
from skinlesion.scoring_segmentation import (FOREGROUND_THRESHOLD, IGNORED_NAMES, ISIC_ID_PATTERN,
                                             JACCARD_THRESHOLD, MASK_EXTENSIONS, MASK_SUFFIXES,
                                             SEGMENTATION_METRICS, binarize_mask, confusion_counts,
                                             load_mask_file, mask_key, mean_metrics, metrics_from_counts,
                                             score_mask_folders, score_segmentation, segmentation_metrics)

__all__ = [
    "SEGMENTATION_METRICS", "JACCARD_THRESHOLD", "FOREGROUND_THRESHOLD", "MASK_SUFFIXES",
    "MASK_EXTENSIONS", "ISIC_ID_PATTERN", "IGNORED_NAMES",
    "binarize_mask", "confusion_counts", "metrics_from_counts", "segmentation_metrics",
    "mean_metrics", "score_segmentation", "mask_key", "load_mask_file", "score_mask_folders",
    "auc_above_sensitivity", "balanced_accuracy", "score_classification", "read_probability_csv",
    "score_classification_files",
    "task2_jaccard", "score_attribute_folders", "AttributeTotals", "TASK2_FILE_PATTERN",
]
