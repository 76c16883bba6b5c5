"""What a layout scanner returns (``Scan`` of ``Record`` s) and the error a dataset path raises."""
import logging
import os
from dataclasses import dataclass, field

# One logger for the whole package, so "skinlesion.layouts" filters every
# skip line whichever layout module wrote it.
log = logging.getLogger("skinlesion.layouts")


class DatasetError(ValueError):
    """A dataset path holds nothing usable, or a subset it was asked for is absent."""


@dataclass
class Record:
    """One usable image of a scanned dataset (all paths absolute)."""
    stem: str
    image_path: str
    mask_path: str
    width: int
    height: int
    lesion_id: str
    raw_label: str = None       # as written in the label file, e.g. "mel"
    diagnosis: str = None       # canonical diagnosis (schemes.DIAGNOSES) or None
    split: str = None           # official subset ("train"/"val"/"test") or None
    label_note: str = None      # why raw_label is None, when a label file exists
    # Dermoscopic criteria {name: typed value} (skinlesion.criteria); unknown ones are absent.
    criteria: dict = None
    # Attribute masks {attribute: path} (ISIC 2018 Task 2: globules, streaks, ...), readable ones only.
    attribute_masks: dict = None


@dataclass
class Scan:
    """What a layout scanner found under ``root``."""
    layout: str
    root: str
    records: list = field(default_factory=list)
    skipped: list = field(default_factory=list)      # [{"file": ..., "reason": ...}]
    label_files: list = field(default_factory=list)  # label files that were read
    vocabulary: frozenset = frozenset()              # canonical diagnoses the labels can give
    official_splits: bool = False
    warnings: list = field(default_factory=list)     # [{"file": ..., "reason": ...}], nothing skipped

    def skip(self, file, reason):
        """Record a skipped file with one warning line that names it and the reason."""
        log.warning("Skipping %s: %s", file, reason)
        self.skipped.append({"file": str(file), "reason": reason})

    def warn(self, file, reason):
        """Record a problem that drops no image (a bad criterion cell, a missing attribute file): one line."""
        log.warning("%s: %s", file, reason)
        self.warnings.append({"file": str(file), "reason": reason})

    def add(self, stem, image_path, mask_path, size, lesion_id=None, **labels):
        """Append a Record; size is (width, height); lesion_id defaults to the stem.

        labels: the optional Record fields (raw_label, diagnosis, split, label_note,
        criteria, attribute_masks).
        """
        self.records.append(Record(stem=stem, image_path=image_path, mask_path=mask_path,
                                   width=size[0], height=size[1], lesion_id=lesion_id or stem,
                                   **labels))

    def label_file_names(self):
        """The base names of the label files read so far, comma-separated ("" when none)."""
        return ", ".join(os.path.basename(path) for path in self.label_files)

    def observed_labels(self):
        """Sorted raw labels present in the records."""
        return sorted({r.raw_label for r in self.records if r.raw_label is not None})
