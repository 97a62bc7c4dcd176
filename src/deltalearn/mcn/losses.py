"""Loss primitives of the tasks: focal loss on heatmaps, masked L1, cross-entropy, Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.sample import IGNORE_INDEX

FOCAL_ALPHA = 2.0  # exponent that down-weights easy cells
FOCAL_BETA = 4.0  # exponent of the penalty reduction near a Gaussian's center


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of positive cells.

    ``logits`` and ``target`` [B, C, h, w]; target is 1 at object centers and a Gaussian
    falling off around them; ``weight`` broadcastable to them (0 ignores a cell, e.g. crowd).
    Zero for logits of +inf at the centers and -inf elsewhere.
    """
    logits = logits.float()
    prob = torch.sigmoid(logits)
    positive = target.eq(1.0).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    pos_term = log_p * (1.0 - prob) ** FOCAL_ALPHA * positive
    neg_term = log_not_p * prob ** FOCAL_ALPHA * (1.0 - target) ** FOCAL_BETA * (1.0 - positive)
    if weight is not None:
        pos_term = pos_term * weight
        neg_term = neg_term * weight
    num_positive = positive.sum().clamp(min=1.0)
    return -(pos_term.sum() + neg_term.sum()) / num_positive


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where ``mask`` is set.

    ``pred`` and ``target`` [B, K, D]; ``mask`` [B, K] or [B, K, D] (1 where a target exists).
    Zero when nothing is masked in.
    """
    if mask.dim() == pred.dim() - 1:
        mask = mask[..., None].expand_as(pred)
    mask = mask.float()
    error = (pred.float() - target.float()).abs() * mask
    return error.sum() / mask.sum().clamp(min=1.0)


def segmentation_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy of ``logits`` [B, C, H, W] against labels [B, H, W], averaged over
    the pixels that are not IGNORE_INDEX (crowd, unlabelled samples); 0 when there are none."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp(min=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice averaged over classes, on ``logits`` [B, C, H, W] and labels [B, H, W]."""
    num_classes = logits.shape[1]
    valid = (target != IGNORE_INDEX)[:, None].float()  # [B, 1, H, W]
    prob = logits.float().softmax(dim=1) * valid
    one_hot = F.one_hot(target.clamp(max=num_classes - 1) * valid[:, 0].long(), num_classes)
    one_hot = one_hot.permute(0, 3, 1, 2).float() * valid  # [B, C, H, W]
    dims = (0, 2, 3)
    overlap = (prob * one_hot).sum(dims)
    total = prob.sum(dims) + one_hot.sum(dims)
    return 1.0 - ((2.0 * overlap + smooth) / (total + smooth)).mean()


# Distillation of a trained network's outputs (Learning without Forgetting, Li and Hoiem 2016)
DISTILL_TEMPERATURE = 2.0  # softens both softmaxes of the segmentation distillation (Hinton et al. 2015)
DISTILL_PEAK = 0.3  # a teacher heatmap cell that is a 3x3 maximum above this counts as one object


def heatmap_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the per-cell Bernoulli distributions of two sigmoid heatmaps
    (logits [B, C, h, w]), summed over cells and divided by the teacher's peaks (at least 1),
    as the focal loss divides by the objects. Zero when the logits agree."""
    teacher = teacher.float()
    target = torch.sigmoid(teacher)
    cross = F.binary_cross_entropy_with_logits(student.float(), target, reduction="sum")
    entropy = F.binary_cross_entropy_with_logits(teacher, target, reduction="sum")
    peaks = (target == F.max_pool2d(target, 3, stride=1, padding=1)) & (target > DISTILL_PEAK)
    return (cross - entropy).clamp(min=0.0) / peaks.sum().clamp(min=1)


def softmax_distillation(student: torch.Tensor, teacher: torch.Tensor,
                         temperature: float = DISTILL_TEMPERATURE) -> torch.Tensor:
    """Hinton's distillation loss on class logits [B, C, h, w]: T^2 KL(teacher || student) of
    the softmaxes at temperature T over the channel axis, averaged over cells."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)
    return temperature ** 2 * kl.mean()


def gated_l1(student: torch.Tensor, teacher: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two regression maps [B, D, h, w], each cell weighted by
    ``gate`` [B, 1, h, w] (where the teacher sees objects, so that empty cells, which no loss
    ever trained, do not count)."""
    error = (student.float() - teacher.float()).abs().mean(dim=1, keepdim=True)
    return (error * gate).sum() / gate.sum().clamp(min=1e-6)
