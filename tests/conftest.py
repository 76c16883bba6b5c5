"""Shared pytest fixtures. Lesion-data fixtures are prefixed ``lesion_``."""
import os

import numpy as np
import pytest

# The files that train models run first, so `make test`'s two workers (pytest-xdist, one file
# at a time) start on the long ones together and the short files fill in around them.
LONG_FILES_FIRST = ("test_multiworker.py", "test_learning.py", "test_cli.py", "test_compat.py", "test_attributes_cli.py",
                    "test_inference_path.py", "test_export.py", "test_classifier.py", "test_classifier_criteria.py")


def pytest_collection_modifyitems(session, config, items):
    """Order the test files long ones first (stable: tests keep their order within a file)."""
    rank = {name: index for index, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))


@pytest.fixture(autouse=True, scope="module")
def _release_models_after_module():
    """Drop Keras' global state and collect garbage after each test file.

    make test's workers (pytest-xdist) run many files in one process, and
    one tiny CLI training alone peaks at ~2.6 GB resident; clearing between
    files keeps what a finished file built from lingering in Keras' global
    state (a full run with it: at most 5.5 GB per worker, Intel Xeon, session
    9). Nothing outlives a file here (no session-scoped fixture holds a model).
    """
    yield
    import gc
    import sys
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session()
    gc.collect()


LESION_REAL_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def _lesion_real_data_root():
    """The shared real-data folder (../shared/data beside the repo, or /work/shared/data)."""
    for candidate in (os.path.normpath(LESION_REAL_DATA), "/work/shared/data"):
        if os.path.isdir(candidate):
            return candidate
    return None


@pytest.fixture
def lesion_write_pair():
    """Function write(image_path, mask_path, seed, size=(64, 80), ...) -> (image, mask).

    Writes a synthetic dermoscopy image (format from the extension) and its
    0/255 PNG/BMP mask; creates parent folders. mask_mode "1" writes a 1-bit
    mask; mask_size writes a mask of another size (for mismatch tests).
    """
    from PIL import Image
    from skinlesion.synthetic import generate

    def write(image_path, mask_path, seed=0, size=(64, 80), diagnosis=None, mask_mode="L",
              mask_size=None):
        """Write the pair; return (image uint8 [H, W, 3], mask bool [H, W])."""
        image, mask, _ = generate(seed, size, diagnosis=diagnosis)
        os.makedirs(os.path.dirname(image_path), exist_ok=True)
        Image.fromarray(image).save(image_path)
        if mask_path is not None:
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            out = Image.fromarray(mask.astype(np.uint8) * 255)
            if mask_size is not None:
                out = out.resize((mask_size[1], mask_size[0]))
            if mask_mode == "1":
                out = out.convert("1")
            out.save(mask_path)
        return image, mask

    return write


@pytest.fixture
def lesion_folder_root(tmp_path):
    """A 12-image ``folder`` layout (64x64, isic2017 diagnoses) written by synthetic.write_folder."""
    from skinlesion.synthetic import write_folder
    root = tmp_path / "lesion_folder"
    write_folder(str(root), 12, size=(64, 64), seed=3, scheme="isic2017")
    return root


@pytest.fixture
def lesion_real_ph2():
    """Path of the real PH2Dataset folder; skips the test when it is absent."""
    root = _lesion_real_data_root()
    if root is None or not os.path.isdir(os.path.join(root, "PH2Dataset", "PH2 Dataset images")):
        pytest.skip("real PH2 data not present (../shared/data/PH2Dataset)")
    return os.path.join(root, "PH2Dataset")


@pytest.fixture
def lesion_real_ham():
    """Path of the real HAM10000_sample folder; skips the test when it is absent."""
    root = _lesion_real_data_root()
    if root is None or not os.path.isdir(os.path.join(root, "HAM10000_sample")):
        pytest.skip("real HAM10000 sample not present (../shared/data/HAM10000_sample)")
    return os.path.join(root, "HAM10000_sample")
