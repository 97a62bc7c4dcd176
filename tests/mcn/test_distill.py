"""Learning without Forgetting (loss.distill): the distillation losses, which samples they see,
the teacher's checks, and growing a seg + det run by pose from pose-only data on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.config import ConfigError
from deltalearn.engine.checkpoint import read_weights
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.mcn.distill import Distiller
from deltalearn.mcn.losses import gated_l1, heatmap_distillation, softmax_distillation

from .sizes import SMALL, mcn
from .test_warm_start import TINY


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 8, 8, generator=generator), torch.randn(2, 3, 8, 8, generator=generator)


def test_distillation_losses_vanish_at_the_teacher_and_grow_away_from_it() -> None:
    teacher, other = _pair()
    gate = torch.rand(2, 1, 8, 8)
    for loss in (heatmap_distillation, softmax_distillation, lambda s, t: gated_l1(s, t, gate)):
        assert loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-5)
        near, far = loss(teacher + 0.1 * (other - teacher), teacher), loss(other, teacher)
        assert 0.0 < near.item() < far.item()


def test_heatmap_distillation_is_divided_by_the_teachers_peaks() -> None:
    teacher = torch.full((1, 1, 16, 16), -8.0)
    student = torch.full((1, 1, 16, 16), -8.0)
    student[0, 0, 2, 2] = 4.0  # one wrong cell
    one = heatmap_distillation(student, teacher)
    teacher[0, 0, [10, 12], [10, 4]] = 6.0  # two confident objects elsewhere, matched by the student
    student[0, 0, [10, 12], [10, 4]] = 6.0
    assert heatmap_distillation(student, teacher).item() == pytest.approx(one.item() / 2, rel=1e-4)


def test_regression_distillation_counts_only_where_the_teacher_sees_objects() -> None:
    student, teacher = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    gate = torch.zeros(1, 1, 8, 8)
    gate[0, 0, 3, 3] = 1.0
    student[0, :, 0, 0] = 5.0  # wrong where nothing is seen: no loss
    assert gated_l1(student, teacher, gate).item() == 0.0
    student[0, :, 3, 3] = 2.0
    assert gated_l1(student, teacher, gate).item() == pytest.approx(2.0)


def _outputs(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.detach() for k, v in model(torch.randn(4, 3, 64, 64)).items()}


def test_each_task_distils_its_outputs_at_its_loss_weights() -> None:
    model = mcn(**SMALL, tasks=("det", "seg", "pose"))
    first, second = _outputs(model, 0), _outputs(model, 1)
    for name, task in model.tasks.items():
        assert task.distill(first, first).item() == pytest.approx(0.0, abs=1e-5), name
        assert task.distill(second, first).item() > 0.0, name
        assert set(task.distilled) == set(task.head_specs), name  # every output is kept
    det = model.tasks["det"]
    det.term_weights = {"heatmap": 0.0, "size": 0.0, "offset": 0.0}
    assert det.distill(second, first).item() == 0.0


def test_only_samples_not_labelled_for_a_task_are_distilled() -> None:
    torch.manual_seed(0)
    teacher = mcn(**SMALL, tasks=("det", "seg"))
    student = mcn(**SMALL, tasks=("det", "seg", "pose"))
    distiller = Distiller(teacher, student, weight=2.0)
    assert distiller.tasks == ["det", "seg"]
    images = torch.randn(4, 3, 64, 64)
    outputs = student(images)
    taught = teacher(images)
    outputs["seg.logits"] = torch.where(torch.arange(4)[:, None, None, None] < 2, taught["seg.logits"].detach(),
                                        outputs["seg.logits"])
    labelled = {"det.labelled": torch.ones(4), "seg.labelled": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    terms = distiller.loss(student, images, outputs, labelled)
    assert terms["distill.det"].item() == 0.0  # every sample has boxes: nothing to keep
    assert terms["distill.seg"].item() == pytest.approx(0.0, abs=1e-5)  # the unlabelled two match the teacher
    labelled["seg.labelled"] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    terms = distiller.loss(student, images, outputs, labelled)
    assert terms["distill.seg"].item() > 0.0
    terms["distill.seg"].backward()
    assert student.tasks["seg"].heads["logits"][0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays as it was


def test_a_teacher_with_other_classes_is_refused() -> None:
    teacher = mcn(**SMALL, tasks=("det", "seg"), num_classes=3)
    student = mcn(**SMALL, tasks=("det", "seg", "pose"), num_classes=1)
    with pytest.raises(ConfigError, match="the det head of the teacher has outputs"):
        Distiller(teacher, student, weight=1.0)
    with pytest.raises(ConfigError, match="has none of the tasks"):
        Distiller(mcn(**SMALL, tasks=("det",)), mcn(**SMALL, tasks=("seg",)), weight=1.0)


@pytest.fixture(scope="module")
def grow(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    assert main(["mcn", "synth", "--out", str(root / "set"), "--images", "8", "--size", "64", "--workers", "1",
                 "--keypoint-min-area", "0"]) == 0
    base = root / "seg_det"
    assert main(["mcn", "train", "--data", str(root / "set"), "--out", str(base), *TINY, "model.tasks=[det,seg]"]) == 0
    config = root / "grow.yaml"
    config.write_text(f"data:\n  sources:\n    - {{data: {root / 'set'}, tasks: [pose]}}\n"
                      "model:\n  tasks: [det, seg, pose]\n")
    return {"base": base, "config": config, "root": root}


def test_growing_by_pose_on_pose_only_data_distils_seg_and_det(grow: dict[str, Path], capsys) -> None:
    out = grow["root"] / "grown"
    capsys.readouterr()
    assert main(["mcn", "train", "--config", str(grow["config"]), "--out", str(out), "--init", str(grow["base"]),
                 *TINY, "loss.distill=1.0", "train.epochs=2"]) == 0
    text = capsys.readouterr().out
    assert f"distilling det, seg from {grow['base']}" in text
    records = [r for r in read_metrics(out) if r.get("split") == "train"]
    assert records and all(r["distill.det"] > 0 and r["distill.seg"] > 0 for r in records)
    assert all(r["samples.det"] == 0 and r["samples.seg"] == 0 and r["samples.pose"] > 0 for r in records)
    record = json.loads((out / "init.json").read_text())
    assert record["init"] == str(grow["base"] / "last.safetensors") and record["parts"]["tasks.pose"]["new"] > 0
    before, after = read_weights(grow["base"] / "last.safetensors"), read_weights(out / "last.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("tasks.det."))

    capsys.readouterr()  # a resumed run finds its teacher in init.json
    assert main(["mcn", "train", "--out", str(out), "--resume", "train.epochs=3"]) == 0
    assert f"distilling det, seg from {grow['base'] / 'last.safetensors'}" in capsys.readouterr().out
    assert max(r["epoch"] for r in read_metrics(out) if r.get("split") == "train") >= 2


def test_bad_distillation_settings_are_one_line_and_exit_2(grow: dict[str, Path], capsys) -> None:
    cases = {
        "no_init": (["--config", str(grow["config"]), "loss.distill=1.0"], "loss.distill needs --init"),
        "untaught": (["--config", str(grow["config"]), "--init", str(grow["base"])],
                     "no source of data.sources labels ['det', 'seg']"),
    }
    for name, (args, message) in cases.items():
        out = grow["root"] / name
        capsys.readouterr()
        assert main(["mcn", "train", "--out", str(out), *args, *TINY]) == EXIT_BAD_INPUT, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
        assert not (out / "last.safetensors").exists(), name
