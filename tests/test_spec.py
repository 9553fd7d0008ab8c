"""Pipeline specs: defaults, overrides, resolved output, built-in names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dffcore.core.errors import DffError, SpecError
from dffcore.core.spec import apply_override, builtin_pipelines, find_pipeline, load_spec

from .conftest import PIPELINES, dff


def test_missing_stages_get_defaults_and_resolved_spec_is_complete() -> None:
    spec = load_spec({})
    resolved = spec.to_dict()
    assert resolved["align"] == {"name": "none", "params": {"photometric": "none"}}
    assert resolved["focus"]["name"] == "log"
    assert resolved["focus"]["params"] == {
        "gaussian_ksize": 5,
        "gaussian_sigma": 0.0,
        "laplacian_ksize": 5,
    }
    assert resolved["aggregate"] == {"name": "argmax", "params": {"sigma": 7.0}}
    assert resolved["regularize"] == []


def test_classic_pipeline_file_validates_and_round_trips() -> None:
    spec = load_spec(PIPELINES / "classic.yaml")
    assert [s.name for s in spec.stages()] == [
        "homography",
        "log",
        "argmax",
        "graphcut",
        "weighted-median",
    ]
    again = load_spec(spec.to_dict())
    assert again.to_dict() == spec.to_dict()


def test_overrides_set_nested_values_and_list_items() -> None:
    spec = load_spec(
        PIPELINES / "classic.yaml",
        [
            "align.params.reference=middle",
            "regularize[0].params.cycles=2",
            "focus.params.laplacian_ksize=3",
        ],
    )
    assert spec.align.params.reference == "middle"
    assert spec.regularize[0].params.cycles == 2
    assert spec.focus.params.laplacian_ksize == 3


def test_override_can_append_a_stage_and_use_shorthand() -> None:
    data = {"focus": "log", "regularize": []}
    apply_override(data, "regularize[0]=weighted-median")
    apply_override(data, "focus.params.gaussian_ksize=7")
    spec = load_spec(data)
    assert spec.regularize[0].name == "weighted-median"
    assert spec.focus.params.gaussian_ksize == 7


@pytest.mark.parametrize("bad", ["novalue", "a..b=1", "regularize[5].name=x"])
def test_malformed_overrides_are_errors(bad: str) -> None:
    with pytest.raises(DffError, match=r"--set"):
        load_spec({"regularize": []}, [bad])


def test_even_ksize_is_rejected_with_its_path() -> None:
    with pytest.raises(SpecError) as err:
        load_spec({"focus": {"name": "log", "params": {"gaussian_ksize": 4}}})
    assert err.value.problems == ["<spec>: focus.params.gaussian_ksize: must be odd (got 4)"]


def test_stage_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match=r"aggregate: expected a mapping"):
        load_spec({"aggregate": 3})


def test_installed_command_finds_builtin_pipelines_from_any_folder(tmp_path: Path) -> None:
    proc = dff("validate", "classic", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "classic.yaml: OK" in proc.stdout


def test_builtin_pipelines_are_found_by_name(tmp_path: Path) -> None:
    assert "classic" in builtin_pipelines()
    assert find_pipeline("classic").name == "classic.yaml"
    with pytest.raises(DffError, match=r"built-in: .*classic"):
        find_pipeline("clasic")
