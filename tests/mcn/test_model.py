"""The Multitask CenterNet model: output names and shapes, task checks, head trunks, priors, encode-loss-decode."""

from __future__ import annotations

import pytest
import torch

from deltalearn.config import load_config
from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.data.sample import Sample
from deltalearn.mcn import MultitaskCenterNet, TimmBackbone, UpsampleNeck, normalize_images
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.tasks import DetectionTask, PoseTask

from .sizes import NUM_CLASSES, SMALL, expected_shapes, mcn


@pytest.mark.parametrize("tasks", [("det",), ("seg",), ("det", "seg"), ("det", "pose"), ("seg", "pose", "det")])
def test_forward_returns_exactly_the_enabled_tasks(tasks: tuple[str, ...]) -> None:
    model = mcn("resnet18", tasks=tasks, num_classes=NUM_CLASSES, **SMALL).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert {key.split(".")[0] for key in outputs} == set(tasks)
    assert set(outputs) == {k for k in expected_shapes(64, 64) if k.split(".")[0] in tasks}


def test_pose_without_detection_is_refused() -> None:
    with pytest.raises(ValueError, match="'pose' needs task 'det'"):
        mcn("resnet18", tasks=("seg", "pose"), **SMALL)
    backbone = TimmBackbone("resnet18")
    neck = UpsampleNeck(backbone.channels, backbone.reductions, 16)
    with pytest.raises(ValueError, match="needs task"):
        MultitaskCenterNet(backbone, neck, {"pose": PoseTask(in_channels=16)})
    with pytest.raises(ValueError, match="name 'det'"):
        MultitaskCenterNet(backbone, neck, {"detection": DetectionTask(1, in_channels=16)})


def test_bad_names_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="did you mean \\['seg'\\]"):
        mcn("resnet18", tasks=("det", "segm"))
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet_18'; nearest: resnet18, "):
        mcn("resnet_18")
    with pytest.raises(ValueError, match="unknown config key 'loss.size'"):
        load_config(MCNConfig, None, ["loss.size=0.1"])


def test_shared_keypoint_offset_and_loss_weights() -> None:
    loss = load_config(MCNConfig, None, ["loss.det.size=0.5", "loss.pose.offset=2.0"]).loss
    model = mcn("resnet18", tasks=("det", "pose"), pose_offsets="shared", loss=loss, **SMALL)
    assert model.tasks["pose"].head_specs["offset"].channels == 2
    assert model.tasks["det"].term_weights["size"] == 0.5
    assert model.tasks["pose"].term_weights == {"heatmap": 1.0, "displacement": 1.0, "offset": 2.0}


def test_per_task_trunks_share_one_hidden_conv_per_task() -> None:
    """``head_trunk="per_task"``: the same outputs, one 3x3 conv per task instead of one per output,
    and a state dict that CenterNet's layout cannot load by mistake."""
    centernet = mcn("resnet18", num_classes=NUM_CLASSES, **SMALL)
    shared = mcn("resnet18", num_classes=NUM_CLASSES, head_trunk="per_task", **SMALL)
    hidden = [m for m in shared.tasks.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(hidden) == 3  # det, seg, pose
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in centernet.parameters())
    with torch.no_grad():
        outputs = shared.eval()(torch.randn(2, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected_shapes(128, 128)
    assert torch.sigmoid(outputs["pose.heatmap"]).mean().item() == pytest.approx(0.1, abs=0.05)
    with pytest.raises(RuntimeError, match="Missing key"):
        centernet.load_state_dict(shared.state_dict())
    with pytest.raises(ValueError, match="head_trunk"):
        mcn("resnet18", head_trunk="per_head", **SMALL)


@pytest.mark.parametrize("trunk", ["per_output", "per_task"])
def test_separable_heads_give_the_same_outputs_for_a_fraction_of_the_work(trunk: str) -> None:
    """``head_conv="separable"``: a depthwise 3x3 and a 1x1 in place of each dense 3x3, the same
    output names, shapes and priors, and far fewer multiply-adds in the heads."""
    from torch.utils.flop_counter import FlopCounterMode

    def head_flops(model: torch.nn.Module) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.randn(1, 3, 128, 128))
        parts = counter.get_flop_counts()
        return sum(sum(counts.values()) for name, counts in parts.items()  # one entry per task module
                   if name.count(".") == 2 and ".tasks." in name)

    dense = mcn("resnet18", num_classes=NUM_CLASSES, head_trunk=trunk, **SMALL).eval()
    separable = mcn("resnet18", num_classes=NUM_CLASSES, head_trunk=trunk, head_conv="separable", **SMALL).eval()
    depthwise = [m for m in separable.tasks.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == (3 if trunk == "per_task" else 7) and all(m.kernel_size == (3, 3) for m in depthwise)
    assert not any(m.kernel_size == (3, 3) and m.groups == 1 for m in separable.tasks.modules()
                   if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        outputs = separable(torch.randn(2, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected_shapes(128, 128)
    assert torch.sigmoid(outputs["det.heatmap"]).mean().item() == pytest.approx(0.1, abs=0.05)
    assert head_flops(separable) < 0.4 * head_flops(dense)
    with pytest.raises(ValueError, match="head_conv"):
        mcn("resnet18", head_conv="grouped", **SMALL)


def test_a_separable_neck_smooths_each_level_with_a_depthwise_and_a_pointwise_conv() -> None:
    model = mcn("resnet18", num_classes=NUM_CLASSES, neck_conv="separable", **SMALL).eval()
    convs = [m for m in model.neck.smooth.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.kernel_size, m.groups > 1) for m in convs] == [((3, 3), True), ((1, 1), False)] * 3
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected_shapes(128, 128)
    with pytest.raises(ValueError, match="neck_conv"):
        mcn("resnet18", neck_conv="grouped", **SMALL)


def test_heatmap_heads_start_at_the_prior() -> None:
    model = mcn("resnet18", num_classes=NUM_CLASSES, **SMALL).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    for key in ("det.heatmap", "pose.heatmap"):
        assert torch.sigmoid(outputs[key]).mean().item() == pytest.approx(0.1, abs=0.05)


def test_encode_loss_backward_and_decode() -> None:
    model = mcn("resnet18", num_classes=NUM_CLASSES, person_label=1, **SMALL)
    size = 64
    masks = torch.zeros((2, size, size), dtype=torch.bool)
    masks[0, 8:40, 8:24] = True
    masks[1, 30:60, 36:60] = True
    keypoints = torch.zeros((2, NUM_KEYPOINTS, 3))
    keypoints[1, :, 0], keypoints[1, :, 1], keypoints[1, :, 2] = 48.0, torch.linspace(32, 58, NUM_KEYPOINTS), 2
    sample = Sample(image=torch.randint(0, 255, (3, size, size), dtype=torch.uint8),
                    boxes=torch.tensor([[8.0, 8.0, 24.0, 40.0], [36.0, 30.0, 60.0, 60.0]]),
                    labels=torch.tensor([0, 1]), masks=masks, keypoints=keypoints,
                    crowd=torch.zeros((size, size), dtype=torch.bool), orig_size=(size, size))
    targets = model.encode([sample, sample])
    outputs = model(normalize_images(torch.stack([sample.image, sample.image])))
    losses = model.loss(outputs, targets)
    assert set(losses) == {"det.heatmap", "det.size", "det.offset", "seg.ce", "pose.heatmap",
                           "pose.displacement", "pose.offset", "loss"}
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0
    decoded = model.decode(outputs, det={"k": 10}, pose={"k": 5})
    assert len(decoded["det"]) == 2 and decoded["det"][0].boxes.shape == (10, 4)
    assert decoded["pose"][1].keypoints.shape == (5, NUM_KEYPOINTS, 2)
    assert decoded["seg"][0].labels.shape == (size, size)



def test_uncertainty_weighting_starts_as_the_sum_and_learns_smaller_weights_for_larger_losses() -> None:
    loss = load_config(MCNConfig, None, ["loss.weighting=uncertainty"]).loss
    model = mcn("resnet18", tasks=("det", "seg"), num_classes=NUM_CLASSES, loss=loss, **SMALL)
    fixed = mcn("resnet18", tasks=("det", "seg"), num_classes=NUM_CLASSES, **SMALL)
    assert fixed.weighting is None and set(model.weighting.log_vars) == {"det", "seg"}
    assert all(k.startswith("weighting.") for k in set(model.state_dict()) - set(fixed.state_dict()))
    per_task = {"det": torch.tensor(5.0), "seg": torch.tensor(0.2)}
    assert model.weighting(per_task).item() == pytest.approx(5.2)  # s = 0: every weight 1
    optimizer = torch.optim.SGD(model.weighting.parameters(), lr=0.1)
    model.weighting(per_task).backward()
    optimizer.step()
    weights = model.weighting.weights()
    assert weights["det"] < 1.0 < weights["seg"]


def test_uncertainty_weighting_logs_its_weights_beside_the_terms() -> None:
    loss = load_config(MCNConfig, None, ["loss.weighting=uncertainty"]).loss
    model = mcn("resnet18", tasks=("det",), num_classes=NUM_CLASSES, loss=loss, **SMALL)
    sample = Sample(image=torch.zeros(3, 64, 64, dtype=torch.uint8), boxes=torch.tensor([[8.0, 8.0, 40.0, 30.0]]),
                    labels=torch.tensor([1]), masks=torch.zeros(1, 64, 64, dtype=torch.bool),
                    keypoints=torch.zeros(1, NUM_KEYPOINTS, 3), crowd=torch.zeros(64, 64, dtype=torch.bool))
    terms = model.loss(model(torch.randn(1, 3, 64, 64)), model.encode([sample]))
    assert terms["weight.det"].item() == 1.0
    assert terms["loss"].item() == pytest.approx(sum(v.item() for k, v in terms.items() if k.startswith("det.")))
