"""Synthetic data generators: people scenes for the MCN (``people``), composites with
foreground masks for the MAE (``composites``), and the painters they draw (``painter``,
``figures``, ``shapes``)."""

from deltalearn.data.synth.composites import Restyled, compose_scene, generate_composites, make_composite
from deltalearn.data.synth.figures import Figure, sample_figure
from deltalearn.data.synth.painter import Painter, PartCanvas, degrade, paint_object, render_scene
from deltalearn.data.synth.people import (
    CATEGORIES,
    COCO_KEYPOINT_MIN_AREA,
    SCENES,
    Scene,
    coco_keypoint_min_area,
    generate_people,
    make_image,
    resolve_scene,
)
from deltalearn.data.synth.shapes import Shape, sample_ball, sample_distractor, sample_vehicle

__all__ = [
    "CATEGORIES",
    "COCO_KEYPOINT_MIN_AREA",
    "SCENES",
    "Figure",
    "Painter",
    "PartCanvas",
    "Restyled",
    "Scene",
    "Shape",
    "coco_keypoint_min_area",
    "compose_scene",
    "degrade",
    "generate_composites",
    "generate_people",
    "make_composite",
    "make_image",
    "paint_object",
    "render_scene",
    "resolve_scene",
    "sample_ball",
    "sample_distractor",
    "sample_figure",
    "sample_vehicle",
]
