"""Finding the newest checkpoint: by config NAME, or of any NAME (``--weights last`` after ``--config NAME=...``)."""
import os

import pytest

import lesions
from mrcnn.model import find_last_checkpoint


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


@pytest.fixture
def logs(tmp_path):
    touch(tmp_path / "lesion20260101T1200" / "mask_rcnn_lesion_0003.weights.h5")
    touch(tmp_path / "lesion20260101T1200" / "mask_rcnn_lesion_0010.weights.h5")
    touch(tmp_path / "lesion20260101T1300" / ".tmp_mask_rcnn_lesion_0001.weights.h5")  # interrupted save only
    touch(tmp_path / "mymodel20260102T0800" / "mask_rcnn_mymodel_0002.weights.h5")
    touch(tmp_path / "lesionx20260103T0800" / "mask_rcnn_lesionx_0001.weights.h5")
    return tmp_path


def test_by_name_takes_that_names_newest_run_with_a_checkpoint(logs):
    assert find_last_checkpoint(str(logs), "lesion").endswith(
        os.path.join("lesion20260101T1200", "mask_rcnn_lesion_0010.weights.h5"))
    assert find_last_checkpoint(str(logs), "MyModel").endswith("mask_rcnn_mymodel_0002.weights.h5")
    assert find_last_checkpoint(str(logs), "lesionx").endswith("mask_rcnn_lesionx_0001.weights.h5")


def test_without_a_name_the_newest_run_of_any_name_wins(logs):
    assert find_last_checkpoint(str(logs)).endswith("mask_rcnn_lesionx_0001.weights.h5")


def test_no_checkpoint_names_the_folder_and_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        find_last_checkpoint(str(tmp_path), "lesion")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        find_last_checkpoint(str(tmp_path / "nothing"))


def test_cli_weights_last_follows_a_name_override(logs):
    args = lesions.parse_args(["--mode", "predict", "--logs", str(logs), "--config", "NAME=mymodel"])
    assert lesions.find_last_checkpoint(args.logs, lesions.name_override(args)).endswith(
        "mask_rcnn_mymodel_0002.weights.h5")
    plain = lesions.parse_args(["--mode", "predict", "--logs", str(logs)])
    assert lesions.name_override(plain) is None
    assert lesions.find_last_checkpoint(plain.logs, None).endswith("mask_rcnn_lesionx_0001.weights.h5")
    with pytest.raises(lesions.UserError, match="train first"):
        lesions.find_last_checkpoint(str(logs / "empty"), "lesion")
