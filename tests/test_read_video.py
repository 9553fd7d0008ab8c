"""The ``video`` reader: a focus sweep recorded as a video file, end to end.

Videos are written here with ``cv2.VideoWriter`` from a rendered stack: MPEG-4 Part 2
(``mp4v``, FFmpeg's default quality: lossy, as a camera's video is) for the accuracy
test, and Motion-JPEG at quality 100 (OpenCV's own MJPEG writer, nearly lossless) where
frames are compared with the rendered ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dffcore import DffError
from dffcore.eval.synth import SynthStack, render_stack, write_stack
from dffcore.io.stack import LazyFrames, read_stack

from .conftest import stderr_lines

N_FRAMES = 12


def write_video(path: Path, frames: np.ndarray, fourcc: str = "mp4v") -> Path:
    """Write RGB ``frames`` as a video through FFmpeg (``FFV1``: lossless, ``mp4v``: MPEG-4
    part 2 at OpenCV's fixed bit rate), or ``MJPG`` at quality 100 with OpenCV's writer."""
    h, w = frames.shape[1:3]
    if fourcc == "MJPG":
        api, params = cv2.CAP_OPENCV_MJPEG, [cv2.VIDEOWRITER_PROP_QUALITY, 100]
    else:
        api, params = cv2.CAP_FFMPEG, []
    writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter_fourcc(*fourcc), 5, (w, h), params)
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} video ({path.suffix})")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def sweep() -> SynthStack:
    return render_stack("default", n_frames=N_FRAMES, size=(96, 128), seed=1)


@pytest.fixture(scope="module")
def videos(sweep: SynthStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("video")
    write_stack(sweep, folder / "frames")
    return {
        "frames": folder / "frames",
        "mp4": write_video(folder / "sweep.mp4", sweep.frames, "FFV1"),  # lossless, in MP4
        "mp4v": write_video(folder / "lossy.mp4", sweep.frames, "mp4v"),
        "avi": write_video(folder / "sweep.avi", sweep.frames, "MJPG"),
    }


def dff(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dffcore.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def depth_error(source: Path, out: Path, truth: np.ndarray, *extra: str) -> float:
    proc = dff("run", "best", str(source), "-o", str(out), "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    return float(np.abs(np.load(out / "depth_index.npy") - truth).mean())


def test_a_video_sweep_gives_depth_close_to_its_frames(
    videos: dict[str, Path], sweep: SynthStack, tmp_path: Path
) -> None:
    """An MP4 holds the frames exactly (a lossless codec): the reader gives them back in
    order, as RGB, and the depth is the folder's. A lossy MPEG-4 (OpenCV's fixed bit rate)
    still runs, with a depth as good as its codec left (measured here: 0.55 frames
    against the PNGs' 0.49; on larger, noisier stacks 1.3-8 times the PNGs' error)."""
    np.testing.assert_array_equal(read_stack(videos["mp4"]).frames, sweep.frames)
    folder = depth_error(videos["frames"], tmp_path / "frames", sweep.index)
    video = depth_error(videos["mp4"], tmp_path / "video", sweep.index)
    assert folder < 0.8
    assert video <= 1.3 * folder, (folder, video)
    lossy = depth_error(videos["mp4v"], tmp_path / "lossy", sweep.index)
    assert lossy < 1.0, lossy


def test_frames_come_in_order_as_rgb_with_the_videos_facts(
    videos: dict[str, Path], sweep: SynthStack
) -> None:
    stack = read_stack(videos["avi"])
    assert stack.frames.shape == (N_FRAMES, 96, 128, 3) and stack.frames.dtype == np.uint8
    got, rendered = stack.frames.astype(np.float32), sweep.frames.astype(np.float32)
    diff = np.abs(got[:, None] - rendered[None]).mean(axis=(2, 3, 4))  # read x rendered
    assert (diff.argmin(axis=1) == np.arange(N_FRAMES)).all(), diff  # in recording order
    mine = np.diag(diff)
    assert mine.max() < 4.0, mine  # MJPG q100, 4:2:0 chroma: about 3 grey levels
    swapped = np.abs(got[..., ::-1] - rendered).mean(axis=(1, 2, 3))
    assert (swapped > 3 * mine).all(), (mine, swapped)  # RGB, not OpenCV's BGR
    assert stack.focus_distances is None and stack.paths == [videos["avi"]]
    meta = stack.metadata
    assert meta["reader"] == "video" and meta["codec"] == "MJPG"
    assert meta["fps"] == pytest.approx(5) and meta["frame_count"] == N_FRAMES


@pytest.mark.parametrize("frames", ["0:12:2", "3:7", "::5", "-4:", ":-9", "-8:-2:3", "10:40"])
def test_frames_selects_like_a_python_slice(videos: dict[str, Path], frames: str) -> None:
    full = read_stack(videos["avi"]).frames
    start, stop, step = (int(p) if p else None for p in [*frames.split(":"), ""][:3])
    expected = full[start:stop:step]
    got = read_stack(videos["avi"], frames=frames)
    np.testing.assert_array_equal(got.frames, expected)
    lazy = read_stack(videos["avi"], frames=frames, lazy=True)
    assert lazy.frames.shape == expected.shape
    np.testing.assert_array_equal(
        np.stack([lazy.frames[k] for k in range(len(expected))]), expected
    )


def test_a_frame_selection_runs_from_the_command_line(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    proc = dff("run", "fast", str(videos["mp4"]), "--frames", "0:12:2", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "6 frames" in proc.stdout + proc.stderr
    index = np.load(tmp_path / "depth_index.npy")
    assert index.shape == (96, 128) and index.max() <= 5


def test_lazy_frames_equal_the_frames_in_memory(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dffcore_plugins.read import video

    decoded = []
    retrieve = video._Capture.retrieve

    def counted(self: video._Capture) -> np.ndarray:
        decoded.append(self.position - 1)
        return retrieve(self)

    monkeypatch.setattr(video._Capture, "retrieve", counted)
    eager = read_stack(videos["mp4"], reverse=True)
    decoded.clear()
    lazy = read_stack(videos["mp4"], lazy=True, reverse=True)
    assert isinstance(lazy.frames, LazyFrames) and lazy.frames.shape == eager.frames.shape
    for order in (range(N_FRAMES), range(N_FRAMES), [5, 2, 11, 11, 0]):  # forward, again, back
        for k in order:
            np.testing.assert_array_equal(lazy.frames[k], eager.frames[k])
    assert sorted(decoded) == list(range(N_FRAMES))  # each frame decoded once, in any order
    runs = {}
    for name, extra in (("memory", ["--memory", "1GB"]), ("whole", [])):
        out = tmp_path / name
        proc = dff("run", "fast", str(videos["mp4"]), "-o", str(out), "-q", *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = np.load(out / "depth_index.npy")
    np.testing.assert_array_equal(runs["memory"], runs["whole"])


def no_frames_video(path: Path) -> Path:
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48)
    )
    writer.release()
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.mp4", lambda p: p.write_bytes(b""), "cannot be opened as a video"),
        ("notes.mp4", lambda p: p.write_text("not a video\n"), "cannot be opened as a video"),
        ("none.avi", no_frames_video, "the video has no frames"),
        ("none.mp4", lambda p: write_video(p, np.zeros((0, 48, 64, 3), np.uint8)), "video"),
    ],
)
def test_unreadable_videos_are_one_line_naming_the_file(
    tmp_path: Path, name: str, make, message: str
) -> None:
    path = tmp_path / name
    make(path)
    proc = dff("run", "fast", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in lines[0] and message in lines[0], lines[0]


def test_a_corrupt_frame_is_named_unless_allowed(videos: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(videos["avi"].read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]  # JPEGs
    assert len(starts) == N_FRAMES
    middle = (starts[5] + starts[6]) // 2
    data[middle : middle + 2000] = (
        np.random.default_rng(0).integers(0, 255, 2000, np.uint8).tobytes()
    )
    path = tmp_path / "corrupt.avi"
    path.write_bytes(bytes(data))
    with pytest.raises(DffError, match=r"corrupt\.avi: frame 5 is corrupt .*--allow-corrupt"):
        read_stack(path)
    with pytest.raises(DffError, match=r"corrupt\.avi: frame 5 is corrupt"):
        read_stack(path, lazy=True).frames[5]
    assert read_stack(path, frames="6:").n == N_FRAMES - 6  # only frames used are judged
    assert read_stack(path, allow_corrupt=True).n == N_FRAMES
