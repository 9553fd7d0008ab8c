"""raft: weights from a file or torch's cache (never downloaded), clear errors, CPU inference.

Tests that run the network need the optional extra (pip install 'dffcore[raft]') and skip
without it. That listing plugins never imports torch is checked by
tests/test_plugins.py::test_listing_does_not_import_heavy_modules.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from dffcore_plugins.align.raft import RAFT, cached_weights

from dffcore.core.components import Context
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.eval.synth import render_stack

from .conftest import dff

SMALL = (64, 96)


@pytest.fixture(scope="module")
def torch() -> Any:
    reason = "raft needs torch and torchvision (pip install 'dffcore[raft]')"
    pytest.importorskip("torchvision", reason=reason)
    return pytest.importorskip("torch", reason=reason)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME pointing at an empty folder: no pretrained weights anywhere."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def random_weights(torch: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def small_stack() -> FocalStack:
    return FocalStack(render_stack("default", n_frames=3, size=SMALL, seed=2).frames)


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(
        DffError, match=r"^raft needs the optional extra: pip install 'dffcore\[raft\]'$"
    ):
        RAFT().network()


def test_no_weights_says_where_to_put_them(torch: Any, empty_cache: Path, small_stack) -> None:
    with pytest.raises(DffError) as err:
        RAFT({"device": "cpu"})(small_stack, Context(jobs=1))
    msg = str(err.value)
    expected = empty_cache / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    assert "\n" not in msg and str(expected) in msg
    assert "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth" in msg
    assert "raft_small(weights=Raft_Small_Weights.DEFAULT)" in msg and "params.weights" in msg


def test_no_weights_via_cli_is_one_line(
    torch: Any, empty_cache: Path, synth_dir: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({"align": {"name": "raft", "params": {"device": "cpu"}}}))
    env = {"TORCH_HOME": str(empty_cache)}
    proc = dff("run", str(spec), str(synth_dir), "-o", str(tmp_path / "o"), "-q", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dff: error: align (raft): raft: no pretrained raft_small weights")


def test_weights_file_is_used_and_not_the_cache(
    torch: Any, empty_cache: Path, random_weights: Path, small_stack: FocalStack
) -> None:
    cache = empty_cache / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not a checkpoint")  # reading the cache would fail
    with pytest.raises(DffError, match=r"raft_small_C_T_V2-01064c6d\.pth: cannot read a torch"):
        RAFT({"device": "cpu"})(small_stack, Context(jobs=1))
    aligner = RAFT({"device": "cpu", "weights": str(random_weights), "iterations": 3})
    aligned = aligner(small_stack, Context(jobs=2))
    assert aligner.network()[1] == "cpu"
    assert aligned.frames.shape == small_stack.frames.shape
    assert aligned.transforms[0] is None
    for t, d in zip(aligned.transforms[1:], aligned.diagnostics[1:], strict=True):
        assert t.shape == (*SMALL, 2) and t.dtype == np.float32
        assert "occluded_fraction" in d and np.isfinite(d["mean_flow_px"])


def test_bad_weights_files_are_clear_errors(
    torch: Any, tmp_path: Path, random_weights: Path, small_stack: FocalStack
) -> None:
    from torchvision.models.optical_flow import raft_large

    with pytest.raises(DffError, match=r"weights file .*nope\.pth does not exist"):
        RAFT({"weights": str(tmp_path / "nope.pth")}).network()
    large = tmp_path / "large.pth"
    torch.save(raft_large(weights=None).state_dict(), large)
    with pytest.raises(
        DffError,
        match=r"not a state dict of torchvision's raft_small; it holds "
        r"raft_large weights: set model: large",
    ):
        RAFT({"weights": str(large), "device": "cpu"}).network()
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(DffError, match=r"other\.pth: not a state dict of torchvision's raft_large"):
        RAFT({"weights": str(other), "model": "large", "device": "cpu"}).network()


def test_resizing_scales_the_flow_back(torch: Any, random_weights: Path) -> None:
    """A pair larger than max_size is resized for inference; the flow is in input pixels."""
    aligner = RAFT(
        {"device": "cpu", "weights": str(random_weights), "max_size": 128, "iterations": 2}
    )
    a = np.random.default_rng(0).random((150, 300), np.float32)
    flow = aligner.pair_flow(a, a)
    assert flow.shape == (150, 300, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_pretrained_recovers_a_shift(torch: Any) -> None:
    try:
        cached_weights("small")
    except DffError as exc:
        pytest.skip(f"pretrained RAFT weights are not in torch's cache: {exc}")
    a = render_stack("default", n_frames=2, size=(240, 320), seed=0).all_in_focus
    a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    b = cv2.warpAffine(
        a,
        np.float32([[1, 0, 3], [0, 1, -2]]),
        (320, 240),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )  # b(x) = a(x - (3, -2))
    flow = RAFT({"device": "cpu"}).pair_flow(a, b)
    err = np.linalg.norm(flow[16:-16, 16:-16] - np.float32([3, -2]), axis=2)
    assert np.median(err) < 0.3, np.median(err)
