"""Errors of bad input data: each prints as one line naming the file and what is wrong."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A file (image, annotation file) that cannot be used as it is.

    ``str(error)`` is one line: ``"<path>: annotation 17: <problem>"`` (the annotation part
    only when ``ann_id`` is given). ``problem`` is the bare description, without the path.
    """

    def __init__(self, path: str | os.PathLike, problem: str, ann_id: int | None = None) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        self.ann_id = ann_id
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: "
        if self.ann_id is not None:
            where += f"annotation {self.ann_id}: "
        return where + self.problem

    def __reduce__(self):  # keep the fields through pickling (DataLoader workers)
        return (type(self), (self.path, self.problem, self.ann_id))


class ImageDecodeError(DataError):
    """An image file that is missing, not an image, truncated or otherwise undecodable."""


class AnnotationFileError(DataError):
    """An annotation file that is missing, not JSON, or not shaped like COCO: nothing to skip to."""


class AnnotationError(DataError):
    """One annotation or image record that contradicts the rules or its image."""


class DataWarning(UserWarning):
    """A bad sample skipped, or an unusable annotation dropped, while the rest goes on."""
