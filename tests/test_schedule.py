"""The training schedule (mrcnn.schedule) and runs as a library concept (mrcnn.runs), without training."""
import json

import pytest

from mrcnn import runs, schedule
from mrcnn.config import Config
from skinlesion import LesionConfig


def test_cosine_from_scratch_is_one_stage_to_the_end_of_the_budget():
    config = LesionConfig(LEARNING_RATE_DECAY="cosine")
    stages = schedule.plan_stages(config, 6, 2, from_scratch=True, minutes=10, start=1000.0)
    assert [(s.layers, s.learning_rate, s.epochs, s.deadline) for s in stages] == [("all", 0.001, 8, 1600.0)]


def test_pretrained_trains_heads_then_all_layers_at_a_tenth_with_budget_shares():
    config = LesionConfig()
    stages = schedule.plan_stages(config, 3, 1, from_scratch=False, minutes=4, start=0.0)
    assert [(s.layers, s.epochs, s.deadline) for s in stages] == [("heads", 3, 180.0), ("all", 4, 240.0)]
    assert stages[1].learning_rate == pytest.approx(stages[0].learning_rate / 10)
    scratch = schedule.plan_stages(config, 3, 1, from_scratch=True)
    assert [s.layers for s in scratch] == ["all", "all"] and scratch[0].deadline is None
    with pytest.raises(ValueError, match="--minutes"):
        schedule.plan_stages(config, 3, 1, from_scratch=True, minutes=0)


def test_run_stages_skips_a_stage_whose_time_is_up_and_records_pretrained():
    class FakeModel:
        config = LesionConfig()
        calls = []

        def train(self, *args, **kwargs):
            self.calls.append(args[2:5])

    model = FakeModel()
    stages = [schedule.Stage("heads", 0.01, 1, None, "one"), schedule.Stage("all", 0.001, 2, 0.0, "two")]
    schedule.run_stages(model, stages, None, None, from_scratch=False)
    assert model.calls == [(0.01, 1, "heads")] and model.config.PRETRAINED is True


def test_a_run_folder_resolves_to_its_newest_checkpoint_and_config(tmp_path):
    run_dir = tmp_path / "mymodel20261201T101500"
    run_dir.mkdir()
    for epoch in (1, 2):
        (run_dir / f"mask_rcnn_mymodel_{epoch:04d}.weights.h5").write_bytes(b"")
    (run_dir / ".tmp_mask_rcnn_mymodel_0003.weights.h5").write_bytes(b"")
    saved = LesionConfig(classes="ph2", IMAGE_MAX_DIM=128, IMAGE_MIN_DIM=128, NAME="mymodel").to_dict()
    (run_dir / "config.json").write_text(json.dumps(saved))
    newest = str(run_dir / "mask_rcnn_mymodel_0002.weights.h5")
    assert runs.resolve_checkpoint(str(run_dir)) == newest
    assert runs.resolve_checkpoint(str(tmp_path)) == newest  # a logs folder: its newest run
    assert runs.resolve_checkpoint(newest) == newest
    assert runs.logs_folder_of(newest) == str(tmp_path)
    assert runs.parse_checkpoint_path(newest, "mymodel") == (str(run_dir), "20261201T101500", 2)
    config = runs.inference_config(LesionConfig, runs.run_config_of(newest))
    assert (config.CLASS_SCHEME, config.IMAGE_MAX_DIM, config.NAME, config.BATCH_SIZE) == ("ph2", 128, "mymodel", 1)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        runs.resolve_checkpoint(str(tmp_path / "missing"))
    (run_dir / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        runs.run_config_of(newest)


def test_config_knows_its_architecture_fields_and_rebuilds_from_saved():
    assert {"BACKBONE", "NORM", "MASK_HEAD_CHANNELS", "NUM_CLASSES"} <= Config.ARCHITECTURE_FIELDS
    assert "LEARNING_RATE" not in Config.ARCHITECTURE_FIELDS
    saved = Config(NUM_CLASSES=3, IMAGE_MAX_DIM=512, IMAGE_MIN_DIM=512, LEARNING_RATE=0.5).to_dict()
    rebuilt = Config.from_saved(saved)
    assert (rebuilt.NUM_CLASSES, rebuilt.IMAGE_MAX_DIM, rebuilt.LEARNING_RATE) == (3, 512, Config.LEARNING_RATE)
    assert Config.from_overrides(["NUM_CLASSES=2", "NORM=group"]).NORM == "group"
    with pytest.raises(ValueError, match="LesionConfig.CLASS_SCHEME"):
        LesionConfig.from_saved(LesionConfig(classes="ph2").to_dict(), classes="isic2017")
