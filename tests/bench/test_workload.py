"""What the benchmark compares: one network per task in the composition, pose with its own persons."""

from __future__ import annotations

from deltalearn.bench import network_infos, single_task_sets

from .tiny import tiny_config


def test_composition_has_one_network_per_task_and_pose_finds_its_own_persons():
    assert single_task_sets(["seg", "det", "pose"]) == [["seg"], ["det"], ["det", "pose"]]
    config = tiny_config(["seg", "det", "pose"])
    config.data.categories = ["person", "vehicle"]
    multitask, singles = network_infos(config, 128)
    assert multitask.config.model.tasks == ["seg", "det", "pose"] and multitask.category_names == ["person", "vehicle"]
    assert [s.config.model.tasks for s in singles] == [["seg"], ["det"], ["det", "pose"]]
    assert singles[2].category_names == ["person"] and singles[1].category_names == ["person", "vehicle"]
    assert all(info.config.data.image_size == 128 for info in [multitask, *singles])
    assert config.model.tasks == ["seg", "det", "pose"] and config.data.image_size == 256  # not changed

