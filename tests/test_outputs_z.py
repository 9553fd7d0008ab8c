"""Outputs of a microscope z-stack (focus unit "z"): height.tif in micrometres that Fiji
opens calibrated, run.json's calibration, and the orthographic point cloud."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from pydantic import Field

import dffcore.core.registry as registry_module
from dffcore.cli import main
from dffcore.core.components import Params, Reader, ReadRequest
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.core.registry import Registry, Source
from dffcore.eval.synth import render_stack
from dffcore.io.heightmap import height_tif_bytes
from dffcore.io.pointcloud import orthographic_points, stack_point_cloud

PIPELINE = "description: cheap\nalign: none\nfocus: lapm\naggregate: argmax\n"


class ZParams(Params):
    pixel_x_um: float = Field(0.5, ge=0, description="lateral pixel size x, µm (0: unknown)")
    pixel_y_um: float = Field(0.25, ge=0, description="lateral pixel size y, µm (0: unknown)")
    z_step_um: float = Field(2.0, ge=0, description="z step, µm (0: unknown)")


class ZReader(Reader):
    """Reads a ``.zst`` file: an (N,H,W) uint8 array saved by numpy, a microscope z-stack."""

    name = "zst"
    Params = ZParams
    suffixes = (".zst", ".ome.zst")

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        with open(paths[0], "rb") as fh:
            data = np.load(fh)[request.frames]
        p = self.params
        meta: dict[str, object] = {}
        if p.pixel_x_um and p.pixel_y_um:
            meta["pixel_size_m"] = (p.pixel_x_um * 1e-6, p.pixel_y_um * 1e-6)
        z = None
        if p.z_step_um:
            meta["z_step_m"] = p.z_step_um * 1e-6
            z = 1e-3 + np.arange(len(data), dtype=np.float64) * p.z_step_um * 1e-6
        return FocalStack(data[..., None], list(paths), z, "z" if z is not None else None, meta)


def install_z_reader(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A default registry with the built-in components and :class:`ZReader`."""
    reg = Registry()
    reg.load_entry_points(third_party=False)
    reg._add(ZReader, Source("test"))
    monkeypatch.setattr(registry_module, "_default", reg)
    return reg


def write_zstack(path: Path, scene: str = "planes", frames: int = 5, seed: int = 0) -> Path:
    """A small grey synthetic stack saved as a ``.zst`` file."""
    synth = render_stack(scene, n_frames=frames, size=(24, 32), seed=seed)
    grey = synth.frames.mean(axis=3).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.save(fh, grey)
    return path


@pytest.fixture
def zrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`dff run cheap sample.zst --ply`, in this process (the reader is a test's)."""
    install_z_reader(monkeypatch)
    (tmp_path / "cheap.yaml").write_text(PIPELINE)
    stack = write_zstack(tmp_path / "sample.zst")
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "cheap.yaml"), str(stack), "-o", str(out), "--ply", "-q"])
    assert code == 0
    return out


def test_height_tif_is_micrometres_with_the_scale_fiji_reads(zrun: Path) -> None:
    depth = np.load(zrun / "depth.npy")  # metres, kept
    conf = np.load(zrun / "confidence.npy")
    with tifffile.TiffFile(zrun / "height.tif") as tif:
        page = tif.pages[0]
        height = page.asarray()
        ij = tif.imagej_metadata
        assert page.dtype == np.float32 and height.shape == depth.shape
        assert page.resolution == pytest.approx((1 / 0.5, 1 / 0.25))  # pixels per µm
        assert page.resolutionunit == tifffile.RESUNIT.NONE  # ImageJ: the unit is `unit=`
    assert ij is not None and ij["unit"] == "um" and ij["vunit"] == "um"
    unknown = (conf == 0) | ~np.isfinite(depth)
    np.testing.assert_array_equal(np.isnan(height), unknown)
    np.testing.assert_allclose(height[~unknown], depth[~unknown] * 1e6, rtol=1e-6)
    assert 1000 <= np.nanmin(height) and np.nanmax(height) <= 1008  # 1 mm + 4 steps of 2 µm
    assert not (zrun / "depth_metres.png").exists()  # millimetres: useless at µm scales


def test_height_tif_nan_where_confidence_is_0_and_no_scale_without_pixel_size() -> None:
    depth = np.array([[1e-6, 2.5e-6], [np.inf, 4e-6]])
    conf = np.array([[1.0, 0.0], [1.0, 0.5]])
    with tifffile.TiffFile(io.BytesIO(height_tif_bytes(depth, conf, origin_px=(3, 4)))) as tif:
        height = tif.asarray()
        ij = tif.imagej_metadata
        assert tif.pages[0].resolution == (1.0, 1.0)
    np.testing.assert_array_equal(np.isnan(height), [[False, True], [True, False]])
    assert height[0, 0] == pytest.approx(1.0) and height[1, 1] == pytest.approx(4.0)
    assert ij is not None and "unit" not in ij and ij["xorigin"] == -3 and ij["yorigin"] == -4


def test_run_json_records_the_calibration(zrun: Path) -> None:
    record = json.loads((zrun / "run.json").read_text())
    stack = record["stack"]
    assert stack["focus_unit"] == "z" and stack["frames"][0].endswith("sample.zst")
    assert stack["pixel_size_m"] == pytest.approx([0.5e-6, 0.25e-6])
    assert stack["z_step_m"] == pytest.approx(2e-6)
    assert record["depth_unit"] == "m" and "micrometres" in record["height_tif"]
    assert "depth_metres_png" not in record
    outputs = set(record["outputs"])
    assert {"height.tif", "depth.npy", "points.ply"} <= outputs
    assert "depth_metres.png" not in outputs
    assert record["point_cloud"]["model"] == "orthographic"
    assert record["point_cloud"]["pixel_size_m"] == pytest.approx([0.5e-6, 0.25e-6])


def test_point_cloud_of_a_z_stack_is_orthographic(zrun: Path) -> None:
    plyfile = pytest.importorskip("plyfile")
    ply = plyfile.PlyData.read(str(zrun / "points.ply"))
    assert any("orthographic" in c for c in ply.comments)
    assert not any("pinhole" in c for c in ply.comments)
    vertex = ply["vertex"].data
    depth = np.load(zrun / "depth.npy")
    conf = np.load(zrun / "confidence.npy")
    rows, cols = np.nonzero((conf > 0) & np.isfinite(depth))  # row-major, as written
    assert len(vertex) == len(rows) > 0
    np.testing.assert_allclose(vertex["x"], cols * 0.5e-6, rtol=1e-6)
    np.testing.assert_allclose(vertex["y"], rows * 0.25e-6, rtol=1e-6)
    np.testing.assert_allclose(vertex["z"], depth[rows, cols], rtol=1e-6)


def test_orthographic_points_by_hand() -> None:
    depth = np.array([[-1e-6, 0.0], [np.nan, 3e-6]], np.float32)  # positions: <= 0 is kept
    points, colours = orthographic_points(depth, (2e-6, 4e-6), offset=(10, 20))
    expected = [[20e-6, 80e-6, -1e-6], [22e-6, 80e-6, 0.0], [22e-6, 84e-6, 3e-6]]
    np.testing.assert_allclose(points, expected, rtol=1e-6)
    assert colours.shape == (3, 3) and (colours == 255).all()
    meta = {"pixel_size_m": (2e-6, 4e-6)}
    stack = FocalStack(np.zeros((2, 4, 4, 1), np.uint8), [], np.array([0.0, 1e-6]), "z", meta)
    cloud = stack_point_cloud(stack, depth, (10, 20, 2, 2))
    np.testing.assert_allclose(cloud.points, expected, rtol=1e-6)
    assert cloud.record["offset_px"] == [10, 20]
    stack.metadata["pixel_size_m"] = (0.0, 1e-6)  # not a pixel size
    with pytest.raises(DffError, match="no lateral pixel size"):
        stack_point_cloud(stack, depth, None)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_ply_without_pixel_size_or_z_step_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_z_reader(monkeypatch)
    stack = write_zstack(tmp_path / "s.zst")
    out = tmp_path / "out"
    args = ["run", "fast", str(stack), "-o", str(out), "--ply", "-q"]
    assert main([*args, "--read", "pixel_x_um=0"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"dff: error: --ply: {stack}: ") and "no lateral pixel size" in line
    assert main([*args, "--read", "z_step_um=0"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"dff: error: --ply: {stack}: ") and "gives none" in line
    assert "--read z_step=" in line and "--focus-distances FILE" in line
    assert "focus_distances.txt" not in line  # not read next to a stack file
    assert not any(out.iterdir())  # nothing was run or written
