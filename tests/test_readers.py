"""Choosing a reader for a stack source, reader options, and a reader component end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import Field

import dffcore.core.registry as registry_module
from dffcore import DffError
from dffcore.core.components import Params, Reader, ReadRequest
from dffcore.core.data import FocalStack
from dffcore.core.registry import Registry, Source
from dffcore.io.readers import choose_reader, parse_frames, parse_read_params
from dffcore.io.stack import LazyFrames, list_frames, read_stack

#: (name, suffixes, container) as Registry.readers() gives them
READERS = [
    ("tiff", (".tif", ".tiff"), True),
    ("ome", (".ome.tif", ".ome.tiff"), True),
    ("video", (".mp4",), True),
    ("raw", (".dng", ".cr2"), False),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:200:2", slice(10, 200, 2)),
        ("::3", slice(None, None, 3)),
        (":-1", slice(None, -1, None)),
        (" 2 : 5 ", slice(2, 5, None)),
        (None, slice(None)),
    ],
)
def test_frames_parse_like_python_slices(text: str | None, expected: slice) -> None:
    assert parse_frames(text) == expected


@pytest.mark.parametrize("text", ["5", "a:b", "1:2:0", "1:2:3:4", "::-1", ""])
def test_bad_frame_selections_name_the_option(text: str) -> None:
    with pytest.raises(DffError, match="--frames"):
        parse_frames(text)


def test_read_params_are_yaml_scalars() -> None:
    got = parse_read_params(["series=1", "channel=0", "flag=true", "name=abc", "x=[1"])
    assert got == {"series": 1, "channel": 0, "flag": True, "name": "abc", "x": "[1"}
    with pytest.raises(DffError, match="KEY=VALUE"):
        parse_read_params(["series"])
    with pytest.raises(DffError, match="KEY=VALUE"):
        parse_read_params(["1x=2"])


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_a_single_file_goes_to_the_container_reader_with_the_longest_ending(
    tmp_path: Path,
) -> None:
    _touch(tmp_path, "a.ome.tif", "b.TIF", "c.mp4", "d.png")
    assert choose_reader(tmp_path / "a.ome.tif", READERS).name == "ome"
    assert choose_reader(tmp_path / "b.TIF", READERS).name == "tiff"
    assert choose_reader(tmp_path / "c.mp4", READERS).paths == [tmp_path / "c.mp4"]
    assert choose_reader(tmp_path / "a.ome.tif", READERS, forced="tiff").name == "tiff"
    with pytest.raises(DffError, match=r"d\.png: is a single file .* \.mp4"):
        choose_reader(tmp_path / "d.png", READERS)


def test_a_folder_of_images_wins_over_raw_frames_next_to_them(tmp_path: Path) -> None:
    both = _touch(tmp_path / "both", "1.jpg", "2.jpg", "1.CR2", "2.cr2", "notes.txt")
    choice = choose_reader(both, READERS)
    assert choice.name is None and sorted(p.name for p in choice.paths) == ["1.jpg", "2.jpg"]
    raw = _touch(tmp_path / "raw", "1.dng", "2.dng", "notes.txt")
    choice = choose_reader(raw, READERS)
    assert choice.name == "raw" and sorted(p.name for p in choice.paths) == ["1.dng", "2.dng"]
    assert choose_reader(str(both / "*.cr2"), READERS).name == "raw"  # a glob picks them


def test_folders_without_frames_and_bad_reader_names_are_clear_errors(tmp_path: Path) -> None:
    empty = _touch(tmp_path / "empty", "notes.txt")
    with pytest.raises(DffError, match=r"no images found \(looked for .*\.jpg.*\.dng"):
        choose_reader(empty, READERS)
    mixed = _touch(tmp_path / "mixed", "1.dng", "2.dng", "a.x3f")
    readers = [*READERS, ("sigma", (".x3f",), False)]
    with pytest.raises(DffError, match="several formats"):
        choose_reader(mixed, readers)
    with pytest.raises(DffError, match=r"unknown reader 'tif'.*Did you mean 'tiff'"):
        choose_reader(mixed, READERS, forced="tif")
    with pytest.raises(DffError, match="reads one file that holds a whole stack"):
        choose_reader(mixed, READERS, forced="video")
    with pytest.raises(DffError, match="no such file or folder"):
        choose_reader(tmp_path / "missing", READERS)


# -- a reader component end to end ------------------------------------------------------
class ToyParams(Params):
    scale: int = Field(1, ge=1, description="multiply every sample by this")


class ToyReader(Reader):
    """Reads a ``.toy`` file: an (N,H,W) uint8 array saved by numpy, z step 2 µm."""

    name = "toy"
    Params = ToyParams
    suffixes = (".toy",)

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        with open(paths[0], "rb") as fh:
            data = np.load(fh)[request.frames] * np.uint8(self.params.scale)
        z = np.arange(len(data), dtype=np.float64) * 2e-6
        frames = data[..., None]
        if request.lazy:
            frames = LazyFrames(frames.shape, frames.dtype, lambda k: data[k][..., None])
        return FocalStack(frames, list(paths), z, "z", {"pixel_size_m": (1e-6, 1e-6)})


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    reg._add(ToyReader, Source("test"))
    monkeypatch.setattr(registry_module, "_default", reg)
    return reg


def test_a_reader_component_reads_a_stack_file(toy_registry: Registry, tmp_path: Path) -> None:
    data = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    path = tmp_path / "s.toy"
    with open(path, "wb") as fh:
        np.save(fh, data)
    assert ("toy", (".toy",), True) in toy_registry.readers()
    assert list_frames(path) == [path]
    stack = read_stack(path)
    assert stack.metadata["reader"] == "toy" and stack.focus_unit == "z"
    np.testing.assert_array_equal(stack.frames[..., 0], data)
    stack = read_stack(path, frames="1::2", reverse=True, read_params={"scale": 2})
    np.testing.assert_array_equal(stack.frames[..., 0], data[1::2][::-1] * 2)
    np.testing.assert_allclose(stack.focus_distances, [2e-6, 0.0])
    lazy = read_stack(path, lazy=True, reverse=True)
    assert isinstance(lazy.frames, LazyFrames) and lazy.frames.shape == (5, 4, 3, 1)
    np.testing.assert_array_equal(lazy.frames[0][..., 0], data[4])
    with pytest.raises(DffError, match=r"--read scal: unknown parameter of reader 'toy'"):
        read_stack(path, read_params={"scal": 2})
    with pytest.raises(DffError, match=r"--read scale: .*greater than or equal to 1"):
        read_stack(path, read_params={"scale": 0})
    with pytest.raises(DffError, match=r"s\.toy: a focal stack needs at least 2 frames, found 1"):
        read_stack(path, frames="4:")


def test_a_sidecar_overrides_what_the_file_says(toy_registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "s.toy"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros((3, 2, 2), np.uint8))
    sidecar = tmp_path / "z.txt"
    sidecar.write_text("# unit: z\n-1e-6\n0\n1e-6\n")
    stack = read_stack(path, focus_distances=sidecar)
    assert stack.focus_unit == "z"
    np.testing.assert_allclose(stack.focus_distances, [-1e-6, 0, 1e-6])
    (tmp_path / "focus_distances.txt").write_text("1\n2\n3\n")  # not taken for a file
    assert read_stack(path).focus_unit == "z"


def test_frame_selection_applies_to_folders_of_images(tmp_path: Path) -> None:
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 5), i * 10, np.uint8))
    stack = read_stack(tmp_path, frames="1:5:2")
    assert [p.name for p in stack.paths] == ["1.png", "3.png"]
    assert stack.frames[:, 0, 0, 0].tolist() == [10, 30]
    with pytest.raises(DffError, match="at least 2 images, found 1"):
        read_stack(tmp_path, frames="5:")


def test_a_folder_sidecar_follows_the_frame_selection(tmp_path: Path) -> None:
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 5), i * 10, np.uint8))
    (tmp_path / "focus_distances.txt").write_text("\n".join(str(0.1 * (i + 1)) for i in range(6)))
    stack = read_stack(tmp_path, frames="1:5:2", reverse=True)
    np.testing.assert_allclose(stack.focus_distances, [0.4, 0.2])
    assert [p.name for p in stack.paths] == ["3.png", "1.png"]
