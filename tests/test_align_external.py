"""external-flow: precomputed flow/map files give back the known geometry, errors are clear."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from dffcore_plugins.align.external_flow import ExternalFlow, read_flo

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.eval.synth import SynthStack, render_stack
from dffcore.ops.warp import grid, to_map

from .conftest import dff

N, SHAPE = 6, (96, 128)
#: (dx, dy) by which each frame's content moved; frame 0 stays put (ground truth holds)
SHIFTS = np.array(
    [[0, 0], [0.37, -0.61], [-1.24, 0.83], [1.9, 1.15], [-0.55, -1.72], [2.43, -0.28]],
    np.float32,
)


@pytest.fixture(scope="module")
def scene() -> tuple[SynthStack, FocalStack]:
    synth = render_stack("default", n_frames=N, size=SHAPE, seed=3)
    h, w = SHAPE
    frames = np.stack(
        [
            cv2.warpAffine(
                f,
                np.float32([[1, 0, dx], [0, 1, dy]]),
                (w, h),
                flags=cv2.INTER_CUBIC,
                borderMode=cv2.BORDER_REFLECT,
            )
            for f, (dx, dy) in zip(synth.frames, SHIFTS, strict=True)
        ]
    )
    return synth, FocalStack(frames)


def known_map(ref: int, i: int) -> np.ndarray:
    """Reference pixel x shows the scene point that frame i shows at x + t_i - t_ref."""
    return grid(SHAPE) + (SHIFTS[i] - SHIFTS[ref])


def write_fields(
    folder: Path,
    fmt: str = "flow",
    pattern: str = "flow_{a:03d}_{b:03d}.npy",
    pairs: list[tuple[int, int]] | None = None,
) -> Path:
    """One file per (a, b): flow or map from frame a to frame b (every pair by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    for a, b in pairs or [(a, b) for a in range(N) for b in range(N) if a != b]:
        field = known_map(a, b) - (grid(SHAPE) if fmt == "flow" else 0)
        path = folder / pattern.format(a=a, b=b, i=b)
        if path.suffix == ".flo":
            cv2.writeOpticalFlow(str(path), field)
        else:
            np.save(path, field)
    return folder


def align(stack: FocalStack, **params) -> dffcore.AlignedStack:
    return ExternalFlow(params)(stack, Context(jobs=2))


def median_error(aligned: dffcore.AlignedStack) -> float:
    ref = aligned.reference
    errs = [
        np.linalg.norm(to_map(t, SHAPE) - known_map(ref, i), axis=2)
        for i, t in enumerate(aligned.transforms)
    ]
    return float(np.nanmedian(np.stack(errs)))


@pytest.mark.parametrize("fmt", ["flow", "map"])
@pytest.mark.parametrize("mode", ["pairs", "to-reference"])
def test_known_shifts_are_recovered(scene, tmp_path: Path, mode: str, fmt: str) -> None:
    synth, stack = scene
    pattern = "flow_{a:03d}_{b:03d}.npy" if mode == "pairs" else "flow_{i:03d}.npy"
    pairs = [(2, i) for i in range(N) if i != 2] if mode == "to-reference" else None
    folder = write_fields(tmp_path / "f", fmt, pattern, pairs)
    aligned = align(stack, folder=str(folder), mode=mode, format=fmt, reference=2)
    assert median_error(aligned) < 0.05
    assert aligned.transforms[2] is None and aligned.diagnostics[2] == {"reference": True}
    assert all(
        t.shape == (*SHAPE, 2) and t.dtype == np.float32
        for t in aligned.transforms
        if t is not None
    )
    # the frames really moved back: each matches its unshifted rendering warped to frame 2
    inner = np.s_[8:-8, 8:-8]
    for i in range(N):
        back = cv2.warpAffine(
            synth.frames[i],
            np.float32([[1, 0, SHIFTS[2, 0]], [0, 1, SHIFTS[2, 1]]]),
            SHAPE[::-1],
            flags=cv2.INTER_CUBIC,
        )
        diff = np.abs(aligned.frames[i][inner].astype(float) - back[inner]).mean()
        before = np.abs(stack.frames[i][inner].astype(float) - back[inner]).mean()
        assert diff < 2.0 and (i == 2 or diff < before / 2), (i, diff, before)
    assert aligned.valid is not None and aligned.valid[:, 4:-4, 4:-4].all()
    assert not aligned.valid[5, :, -3:].any()  # frame 5 moved 3.67 px left of frame 2


def test_chained_pairs_equal_the_to_reference_fields(scene, tmp_path: Path) -> None:
    _, stack = scene
    folder = write_fields(tmp_path / "f")
    write_fields(folder, pattern="flow_{i:03d}.npy", pairs=[(3, i) for i in range(N) if i != 3])
    chained = align(stack, folder=str(folder), reference=3, chain=True)
    direct = align(stack, folder=str(folder), reference=3, mode="to-reference")
    assert [d.get("pair") for d in chained.diagnostics[4:]] == [[3, 4], [4, 5]]
    for i in range(N):
        a, b = to_map(chained.transforms[i], SHAPE), to_map(direct.transforms[i], SHAPE)
        both = np.isfinite(a).all(axis=2) & np.isfinite(b).all(axis=2)
        assert both.mean() > 0.9
        np.testing.assert_allclose(a[both], b[both], atol=1e-3)


def test_chain_false_reads_reference_pairs_and_chain_true_names_the_missing_file(
    scene, tmp_path: Path
) -> None:
    _, stack = scene
    folder = write_fields(tmp_path / "f", pairs=[(0, i) for i in range(1, N)])
    assert median_error(align(stack, folder=str(folder), chain=False)) < 0.05
    with pytest.raises(DffError, match=r"flow_001_002\.npy: missing .*flow_\{a:03d\}_\{b:03d\}"):
        align(stack, folder=str(folder), chain=True)


def test_transposed_arrays_and_flo_files_are_read(scene, tmp_path: Path) -> None:
    _, stack = scene
    folder = write_fields(
        tmp_path / "flo", pattern="f{a}-{b}.flo", pairs=[(0, i) for i in range(1, N)]
    )
    flo = read_flo(folder / "f0-1.flo")
    np.testing.assert_array_equal(flo, cv2.readOpticalFlow(str(folder / "f0-1.flo")))
    aligned = align(stack, folder=str(folder), pattern="f{a}-{b}.flo", chain=False)
    assert median_error(aligned) < 0.05
    chw = tmp_path / "chw"
    chw.mkdir()
    for i in range(1, N):
        np.save(chw / f"flow_{i:03d}.npy", (known_map(0, i) - grid(SHAPE)).transpose(2, 0, 1))
    assert median_error(align(stack, folder=str(chw), mode="to-reference")) < 0.05


def test_nan_pixels_become_invalid(scene, tmp_path: Path) -> None:
    _, stack = scene
    folder = write_fields(tmp_path / "f", pairs=[(0, i) for i in range(1, N)])
    field = np.load(folder / "flow_000_003.npy")
    field[10:20, 30:40] = np.nan
    np.save(folder / "flow_000_003.npy", field)
    aligned = align(stack, folder=str(folder), chain=False)
    assert not aligned.valid[3, 10:20, 30:40].any() and aligned.valid[3, 40:60, 50:90].all()


def test_bad_files_are_one_line_errors_naming_the_file(scene, tmp_path: Path) -> None:
    _, stack = scene
    folder = write_fields(tmp_path / "f", pattern="flow_{i:03d}.npy", pairs=[(0, 1), (0, 2)])
    kw = {"folder": str(folder), "mode": "to-reference"}
    with pytest.raises(DffError, match=r"flow_003\.npy: missing .*flow_\{i:03d\}\.npy"):
        align(stack, **kw)
    np.save(folder / "flow_003.npy", np.zeros((48, 64, 2), np.float32))
    with pytest.raises(DffError, match=r"flow_003\.npy: .*shape \(48, 64, 2\); expected \(96, 128"):
        align(stack, **kw)
    np.save(folder / "flow_003.npy", np.full((*SHAPE, 2), np.nan, np.float32))
    with pytest.raises(DffError, match=r"flow_003\.npy: no finite value"):
        align(stack, **kw)
    (folder / "flow_003.npy").write_text("not numpy")
    with pytest.raises(DffError, match=r"flow_003\.npy: cannot read") as err:
        align(stack, **kw)
    assert "\n" not in str(err.value)
    with pytest.raises(DffError, match=r"pattern 'flow_\{j\}\.npy'"):
        align(stack, **kw, pattern="flow_{j}.npy")


def test_pipeline_through_load_spec(scene, tmp_path: Path) -> None:
    synth, stack = scene
    folder = write_fields(tmp_path / "f")
    spec = dffcore.load_spec(
        {"align": {"name": "external-flow", "params": {"folder": str(folder), "crop": True}}}
    )
    run = dffcore.run_pipeline(spec, stack, jobs=2)
    assert spec.align.params.model_dump(mode="json")["folder"] == str(folder)
    x, y, w, h = run.crop
    assert w >= SHAPE[1] - 6 and h >= SHAPE[0] - 6  # shifts of at most 2.4 px each way
    truth = synth.index[y : y + h, x : x + w]
    assert np.median(np.abs(run.result.index - truth)) < 1.0


def test_cli_missing_folder_is_one_line(synth_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    missing = tmp_path / "no-such-flows"
    spec.write_text(
        yaml.safe_dump({"align": {"name": "external-flow", "params": {"folder": str(missing)}}})
    )
    proc = dff("run", str(spec), str(synth_dir), "-o", str(tmp_path / "out"), "-q")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "external-flow" in lines[0] and str(missing) in lines[0] and "does not exist" in lines[0]
