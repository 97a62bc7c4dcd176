"""Typed config: YAML, overrides, unknown keys with a suggestion, saved and reloaded."""

from pathlib import Path

import pytest
import yaml

from deltalearn.config import ConfigError, load_config, save_config, to_dict, valid_keys
from deltalearn.mcn.config import MCNConfig


def test_defaults_and_required_keys_exist():
    keys = valid_keys(MCNConfig)
    for key in ("train.epochs", "train.batch_size", "train.lr", "data.image_size"):
        assert key in keys


def test_yaml_then_overrides(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  tasks: [det]\n  backbone: resnet18\ntrain:\n  epochs: 3\n")
    config = load_config(MCNConfig, path, ["train.epochs=5", "train.lr=2e-4", "data.scale_range=[0.8,1.2]"])
    assert config.model.tasks == ["det"]
    assert config.model.backbone == "resnet18"
    assert config.train.epochs == 5
    assert config.train.lr == pytest.approx(2e-4)
    assert config.data.scale_range == (0.8, 1.2)
    assert config.data.image_size == 256  # default kept


def test_single_value_for_a_list():
    assert load_config(MCNConfig, None, ["model.tasks=seg"]).model.tasks == ["seg"]


@pytest.mark.parametrize(
    "override, nearest",
    [("train.epoch=3", "train.epochs"), ("trian.lr=0.1", "train.lr"), ("data.imagesize=128", "data.image_size")],
)
def test_unknown_override_names_nearest_key(override, nearest):
    with pytest.raises(ConfigError) as info:
        load_config(MCNConfig, None, [override])
    message = str(info.value)
    assert override.split("=")[0] in message and f"did you mean '{nearest}'" in message
    assert "\n" not in message


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batchsize: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'train\.batchsize'; did you mean 'batch_size'"):
        load_config(MCNConfig, path)


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.epochs=two", "expected an integer"),
        ("train.epochs=1.5", "expected an integer"),
        ("model.pretrained=3", "expected true or false"),
        ("model.pose_offsets=both", "is not one of"),
        ("model.tasks=[pose]", "pose needs det"),
        ("data.image_size=100", "multiple of 32"),
        ("train.epochs", "key=value"),
    ],
)
def test_bad_values_fail_clearly(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(MCNConfig, None, [override])


def test_malformed_and_missing_files(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [epochs: 1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: malformed YAML at line"):
        load_config(MCNConfig, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(MCNConfig, tmp_path / "nope.yaml")


def test_saved_config_reloads_identically(tmp_path: Path):
    config = load_config(MCNConfig, None, ["train.epochs=7", "model.tasks=[det,pose]", "data.categories=[person]"])
    save_config(config, tmp_path / "run" / "config.yaml")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 7
    assert load_config(MCNConfig, tmp_path / "run" / "config.yaml") == config
    assert to_dict(config) == saved
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no temporary left behind


def test_shipped_configs_by_name_and_all_valid():
    from deltalearn.config import PACKAGED_CONFIGS, find_config

    assert find_config("synth_det", "mcn") == PACKAGED_CONFIGS / "mcn" / "synth_det.yaml"
    with pytest.raises(ConfigError, match="did you mean 'synth_det'"):
        find_config("synth_dett", "mcn")
    shipped = sorted((PACKAGED_CONFIGS / "mcn").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {f"{prefix}_{combo}" for prefix in ("synth", "coco_person")
                                        for combo in ("seg", "det", "seg_det", "det_pose", "seg_det_pose")}
    for path in shipped:
        config = load_config(MCNConfig, path)
        assert path.stem.removesuffix("_mobile").endswith("_" + "_".join(config.model.tasks))
        if path.stem.endswith("_mobile"):  # the same recipe as its base on a mobile backbone
            base = load_config(MCNConfig, path.with_name(path.stem.removesuffix("_mobile") + ".yaml"))
            assert config.model.backbone == "mobilenetv3_large_100" and config.model.head_conv == "separable"
            assert config.train == base.train and config.data == base.data and config.loss == base.loss


def test_a_config_names_its_base_and_sets_only_what_differs(tmp_path: Path):
    (tmp_path / "parent.yaml").write_text("train:\n  epochs: 7\n  lr: 0.5\nmodel:\n  head_channels: 32\n")
    (tmp_path / "child.yaml").write_text("base: parent\ntrain:\n  lr: 0.25\n")
    (tmp_path / "grandchild.yaml").write_text("base: child.yaml\nmodel:\n  neck_channels: 16\n")
    config = load_config(MCNConfig, tmp_path / "grandchild.yaml", ["train.epochs=9"])
    assert (config.train.epochs, config.train.lr, config.model.head_channels, config.model.neck_channels) == \
        (9, 0.25, 32, 16)
    (tmp_path / "shipped.yaml").write_text("base: synth_det\nmodel:\n  backbone: dla34\n")
    config = load_config(MCNConfig, tmp_path / "shipped.yaml")
    assert config.model.backbone == "dla34" and config.model.tasks == ["det"] and config.data.image_size == 128
    (tmp_path / "loop.yaml").write_text("base: loop\n")
    (tmp_path / "missing.yaml").write_text("base: synth_dett\n")
    (tmp_path / "typo.yaml").write_text("base: parent\ntrain:\n  epoch: 3\n")
    for name, words in (("loop", "loop of bases"), ("missing", "did you mean 'synth_det'"),
                        ("typo", "typo.yaml: unknown config key 'train.epoch'")):
        with pytest.raises(ConfigError, match=words):
            load_config(MCNConfig, tmp_path / f"{name}.yaml")


def test_atomic_writes_get_the_mode_of_a_normal_new_file(tmp_path):
    """mkstemp creates 0600 files; results and checkpoints must be readable like any new file."""
    import os

    from deltalearn.data.io import atomic_path, atomic_write_text, new_file_mode

    old = os.umask(0o022)
    try:
        import torch

        from deltalearn.engine.checkpoint import save_weights

        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        save_weights({"w": torch.zeros(2)}, tmp_path / "c.safetensors")  # safetensors recreates the file as 0600
        assert new_file_mode() == 0o644
        for name in ("a.json", "b.bin", "c.safetensors"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
