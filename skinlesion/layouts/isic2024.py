"""ISIC 2024 (SLICE-3D crops): train-image.hdf5 (JPEG bytes keyed by isic_id) + train-metadata.csv.

train-metadata.csv: isic_id, target (1 = malignant), patient_id, and many
more columns, of which only these three are read. Images group by
patient_id. The images stay inside the HDF5 file: a record's image_path is
that file and its stem the key (skinlesion.labelled.read_image decodes it);
sizes are not read at scan time (401059 crops), so they are None. Where the
crops come as files instead (train-image/image/<isic_id>.jpg), those are read.
"""
import os

from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import list_images, unique_stems
from skinlesion.layouts.labelonly import add_labelled_images, read_label_columns
from skinlesion.layouts.registry import Layout, register

ISIC2024_HDF5 = "train-image.hdf5"
ISIC2024_IMAGES = os.path.join("train-image", "image")
ISIC2024_METADATA = "train-metadata.csv"


def detect(directory, names):
    """train-metadata.csv beside train-image.hdf5 or a train-image/ folder."""
    return ISIC2024_METADATA in names and (ISIC2024_HDF5 in names or "train-image" in names)


def hdf5_keys(scan, path):
    """{key: path} of the datasets at the top of the HDF5 file, or {} after recording why it is unreadable."""
    import h5py
    try:
        with h5py.File(path, "r") as handle:
            return dict.fromkeys(handle.keys(), path)
    except (OSError, ValueError) as err:
        scan.skip(path, f"HDF5 file unreadable ({err}); expected JPEG bytes keyed by isic_id")
        return {}


def scan(root, subsets=None):
    """The crops with target labels and patient ids; no masks. subsets: ignored (no official split)."""
    found = Scan("isic2024", root)
    path = os.path.join(root, ISIC2024_METADATA)
    labels, groups = {}, {}
    for row_no, (stem, target, patient) in read_label_columns(found, path, ("isic_id", "target"),
                                                              ("patient_id",)):
        labels[stem] = (target or None, None, row_no)
        if patient:
            groups[stem] = patient
    container = os.path.join(root, ISIC2024_HDF5)
    if os.path.isfile(container):
        present, where, check = hdf5_keys(found, container), ISIC2024_HDF5, False
    else:
        images = list_images(os.path.join(root, ISIC2024_IMAGES))
        present, where, check = dict(unique_stems(found, images)), f"{ISIC2024_IMAGES}/", True
    add_labelled_images(found, "isic2024", present, labels, path, where, groups, check=check)
    return found


register(Layout(name="isic2024",
                expected=f"{ISIC2024_HDF5} (JPEG bytes keyed by isic_id) + {ISIC2024_METADATA} "
                         f"(isic_id,target,patient_id,...)",
                detect=detect, scan=scan, has_masks=False, has_groups=True, group_key="patient_id"))
