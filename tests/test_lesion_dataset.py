"""LesionDataset on the synthetic set and seeded splits; LesionConfig follows the scheme."""
import numpy as np
import pytest

from mrcnn.config import ConfigError
from skinlesion import SCHEMES, DatasetError, LesionConfig, LesionDataset, SchemeError


def synthetic(subset="train", classes="lesion", **kwargs):
    """A loaded synthetic LesionDataset (64 px images unless told otherwise)."""
    dataset = LesionDataset()
    kwargs.setdefault("size", (64, 64))
    dataset.load(kwargs.pop("path", None), subset, classes=classes, **kwargs)
    return dataset


def test_public_entry_points():
    import skinlesion
    assert set(SCHEMES) == {"lesion", "isic2017", "isic2018", "binary", "ph2"}
    assert callable(skinlesion.generate) and callable(skinlesion.write_folder)
    assert issubclass(DatasetError, ValueError) and issubclass(SchemeError, ValueError)


def test_synthetic_default_counts_and_summary():
    dataset = synthetic("train", "isic2018", count=None)
    summary = dataset.summary
    assert summary["layout"] == "synthetic" and summary["images"] == 300
    assert sum(summary["classes"].values()) == 300
    assert max(summary["classes"].values()) - min(summary["classes"].values()) <= 1  # balanced
    assert summary["skipped"] == []
    assert synthetic("val").summary["images"] == 50


def test_synthetic_n_and_all():
    assert synthetic(path="synthetic:12").summary["images"] == 12
    everything = synthetic("all", path="synthetic:20")
    assert everything.summary["images"] == 20
    assert {info["subset"] for info in everything.image_info} == {"train", "val", "test"}
    with pytest.raises(DatasetError, match="synthetic:N"):
        synthetic(path="synthetic:many")


def test_synthetic_images_masks_and_labels():
    dataset = synthetic("train", "isic2017", count=6, size=(64, 96))
    assert dataset.class_names == ["BG", "melanoma", "seborrheic_keratosis", "nevus"]
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        mask, class_ids = dataset.load_mask(image_id)
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 96, 1) and mask.dtype == bool and mask.any()
        assert class_ids.dtype == np.int32 and class_ids.shape == (1,)
        assert dataset.class_names[class_ids[0]] == dataset.load_label(image_id)
    assert "synthetic" in dataset.image_reference(0)


def test_synthetic_is_deterministic_and_subsets_are_new_images():
    first, again = synthetic(count=3), synthetic(count=3)
    assert np.array_equal(first.load_image(2), again.load_image(2))
    val = synthetic("val", count=3)
    train_images = [first.load_image(i) for i in first.image_ids]
    for image_id in val.image_ids:
        assert not any(np.array_equal(val.load_image(image_id), t) for t in train_images)
    other_seed = synthetic(count=3, seed=1)
    assert not np.array_equal(other_seed.load_image(0), first.load_image(0))


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_has_synthetic_labels(scheme):
    dataset = synthetic("val", scheme, count=2 * len(SCHEMES[scheme]))
    assert set(dataset.summary["classes"].values()) == {2}
    assert dataset.num_classes == LesionConfig(classes=scheme).NUM_CLASSES


def test_one_dataset_one_scheme():
    dataset = synthetic(count=2)
    dataset.load(None, "val", classes="lesion", size=(64, 64), count=2)
    assert len(dataset.image_info) == 4
    with pytest.raises(SchemeError, match="already"):
        dataset.load(None, "val", classes="binary", size=(64, 64), count=2)


def test_bad_arguments_name_the_field():
    with pytest.raises(DatasetError, match="subset"):
        synthetic("training")
    with pytest.raises(ValueError, match="split"):
        synthetic(split=(0.5, 0.1, 0.1))
    with pytest.raises(DatasetError, match="seed"):
        synthetic(seed=-1)


def test_folder_split_partitions_and_is_seeded(lesion_folder_root):
    def subsets(seed):
        """{subset: set of stems} for one seed."""
        out = {}
        for subset in ("train", "val", "test"):
            dataset = LesionDataset()
            dataset.load(str(lesion_folder_root), subset, seed=seed)
            out[subset] = {info["stem"] for info in dataset.image_info}
        return out

    first = subsets(0)
    assert sum(len(s) for s in first.values()) == 12
    assert len(set.union(*first.values())) == 12
    assert subsets(0) == first
    assert any(subsets(seed) != first for seed in (1, 2, 3))


def test_split_fractions_are_configurable(lesion_folder_root):
    dataset = LesionDataset()
    summary = dataset.load(str(lesion_folder_root), "test", split=(0.5, 0.25, 0.25))
    assert summary["images"] == 3 and summary["split"] == [0.5, 0.25, 0.25]


def test_lesion_config_follows_scheme():
    config = LesionConfig()
    assert config.NUM_CLASSES == 2 and config.NAME == "lesion" and config.BACKBONE == "resnet50"
    assert config.IMAGE_SHAPE.tolist() == [256, 256, 3] and config.BATCH_SIZE == 2
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 2
    isic = LesionConfig.for_scheme("isic2018", IMAGE_MAX_DIM=512, IMAGE_MIN_DIM=512)
    assert isic.NUM_CLASSES == 8 and isic.IMAGE_SHAPE.tolist() == [512, 512, 3]
    assert isic.CLASS_NAMES[1] == "MEL" and isic.to_dict()["CLASS_SCHEME"] == "isic2018"
    assert LesionConfig.IMAGE_MAX_DIM == 256  # overrides stay on the instance


def test_lesion_config_subclass_sets_scheme():
    class Ph2Config(LesionConfig):
        """A config that picks its scheme by class attribute."""
        CLASS_SCHEME = "ph2"

    assert Ph2Config().NUM_CLASSES == 4


def test_lesion_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="NUM_CLASSES"):
        LesionConfig(classes="binary", NUM_CLASSES=5)
    with pytest.raises(ConfigError, match="IMAGE_SIZE"):
        LesionConfig(IMAGE_SIZE=256)
    with pytest.raises(ConfigError, match="CLASS_SCHEME"):
        LesionConfig(classes="moles")
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIM"):
        LesionConfig(IMAGE_MAX_DIM=300, IMAGE_MIN_DIM=256)
