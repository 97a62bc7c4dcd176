"""Frames in and out: video files, folders of frames, cameras and streams (OpenCV), one frame at
a time so that memory stays flat however long the input is.

``FrameSource(source)`` reads a video file (by suffix), a folder of images in name order, a
camera index ("0") or a stream URL ("rtsp://...", "http://..."). A frame that cannot be decoded
is skipped and counted; a source that cannot be opened is a :class:`DataError` naming it.
``VideoSink`` writes an .mp4 under a temporary name and renames it when closed, so the file
is whole even if a run stops halfway.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError, DataWarning
from .io import list_images, load_rgb

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEFAULT_FPS = 25.0  # for folders of frames and sources that do not say
MAX_FAILED_READS = 25  # consecutive undecodable frames after which a file or stream counts as ended


def is_video_source(source: str | os.PathLike) -> bool:
    """True for a camera index, a URL or a file with a video suffix."""
    text = os.fspath(source)
    return text.isdigit() or "://" in text or Path(text).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Frame:
    index: int  # position in the source, counting skipped frames
    image: np.ndarray  # [H, W, 3] uint8 RGB
    name: str  # the file of a folder's frame, else "<source>#<index>"


class FrameSource:
    """Iterate the frames of ``source``; ``fps``, ``count`` (None when unknown), ``skipped``."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = os.fspath(source)
        self.skipped: list[str] = []
        self.capture: cv2.VideoCapture | None = None
        self.files: list[Path] = []
        path = Path(self.source)
        if path.is_dir():
            self.files = list_images(path)
            if not self.files:
                raise DataError(path, "no frames (image files) in this folder")
            self.fps, self.count = DEFAULT_FPS, len(self.files)
            return
        if not self.source.isdigit() and "://" not in self.source and not path.is_file():
            raise DataError(path, "video file not found")
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the error below says it in one line
        try:
            self.capture = cv2.VideoCapture(int(self.source) if self.source.isdigit() else self.source)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self.capture.isOpened():
            kind = "camera" if self.source.isdigit() else "stream" if "://" in self.source else "video file"
            raise DataError(self.source, f"cannot open this {kind} (OpenCV could not read it)")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.count = count if count > 0 and path.is_file() else None

    def __iter__(self) -> Iterator[Frame]:
        return self._folder() if self.files else self._capture()

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append(name)
        warnings.warn(f"skipping frame: {name}: {reason}", DataWarning, stacklevel=3)

    def _folder(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            try:
                yield Frame(index, load_rgb(path), str(path))
            except DataError as error:
                self._skip(str(path), error.problem)

    def _capture(self) -> Iterator[Frame]:
        assert self.capture is not None
        index, failed = 0, 0
        try:
            while self.count is None or index < self.count:
                ok, bgr = self.capture.read()
                if not ok or bgr is None or bgr.ndim != 3:
                    if self.count is None or failed >= MAX_FAILED_READS:
                        break  # a stream's or camera's end, or a file that stopped decoding for good
                    self._skip(f"{self.source}#{index}", "could not be decoded")
                    index, failed = index + 1, failed + 1
                    continue
                failed = 0
                yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{self.source}#{index}")
                index += 1
        finally:
            self.capture.release()


class VideoSink:
    """An .mp4 (mp4v) writer of RGB frames; the frame size is taken from the first frame."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps = Path(path), fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write mp4v video here")
            self.size = (width, height)
        if (image.shape[1], image.shape[0]) != self.size:  # a stream that changed size: keep one size
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and give it its name (nothing is written for no frames)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.partial, self.path)

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
