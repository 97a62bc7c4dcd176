"""Frame sources (video files, folders of frames, cameras, streams) and the .mp4 writer."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from deltalearn.data.errors import DataError
from deltalearn.data.io import atomic_write_bytes, encode_png
from deltalearn.data.synth.video import TRACKS_FILE, VIDEO_FILE, generate_people_video
from deltalearn.data.video import FrameSource, VideoSink, is_video_source


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    generate_people_video(folder, frames=12, size=64, persons=2, fps=8.0)
    return folder


def test_a_generated_video_reads_back_frame_by_frame(video: Path) -> None:
    assert (video / TRACKS_FILE).is_file()
    source = FrameSource(video / VIDEO_FILE)
    assert source.fps == pytest.approx(8.0) and source.count == 12
    frames = list(source)
    assert [f.index for f in frames] == list(range(12)) and not source.skipped
    assert all(f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert frames[0].name == f"{video / VIDEO_FILE}#0"


def test_broken_frames_of_a_video_are_skipped_and_counted(video: Path, tmp_path: Path) -> None:
    data = bytearray((video / VIDEO_FILE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(2000)  # a stretch of the stream zeroed: frames that cannot be decoded
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    source = FrameSource(broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(source)
    assert source.skipped and len(frames) + len(source.skipped) == 12
    assert frames[0].index == 0 and frames[-1].index == 11  # the frames after the damage are read
    assert len(caught) == len(source.skipped) and "could not be decoded" in str(caught[0].message)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(bytes(data[:middle]))  # mp4v keeps its index at the end: a cut file cannot be opened
    with pytest.raises(DataError, match="cut.mp4: cannot open this video file"):
        FrameSource(cut)


def test_a_folder_of_frames_skips_and_counts_a_corrupt_frame(video: Path, tmp_path: Path) -> None:
    for index, frame in enumerate(FrameSource(video / VIDEO_FILE)):
        atomic_write_bytes(tmp_path / f"{index:03d}.png", encode_png(frame.image))
        if index == 3:
            break
    (tmp_path / "002.png").write_bytes(b"not a png")
    source = FrameSource(tmp_path)
    with pytest.warns(UserWarning, match="skipping frame: .*002.png"):
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3] and source.skipped == [str(tmp_path / "002.png")]


@pytest.mark.parametrize("name, message", [
    ("missing.mp4", "video file not found"),
    ("empty_dir", "no frames (image files) in this folder"),
    ("notes.mp4", "cannot open this video file"),
])
def test_sources_that_cannot_be_opened_are_one_clear_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(DataError, match=re.escape(message)) as error:
        FrameSource(tmp_path / name)
    assert str(error.value).startswith(str(tmp_path / name)) and "\n" not in str(error.value)


def test_a_camera_that_does_not_exist_is_named() -> None:
    with pytest.raises(DataError, match="^97: cannot open this camera"):
        FrameSource("97")


def test_video_sources_are_told_apart() -> None:
    assert all(map(is_video_source, ["0", "rtsp://host/stream", "clip.MP4", "a/b.mkv"]))
    assert not any(map(is_video_source, ["images", "photo.jpg"]))


def test_the_writer_names_the_file_only_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with VideoSink(path, fps=5.0) as sink:
        for value in range(6):
            sink.write(np.full((48, 64, 3), 40 * value, np.uint8))
        sink.write(np.zeros((32, 32, 3), np.uint8))  # another size: resized to the first
        assert not path.exists()
    frames = list(FrameSource(path))
    assert len(frames) == 7 and frames[0].image.shape == (48, 64, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
