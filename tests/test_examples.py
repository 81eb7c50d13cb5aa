"""The example projects as users meet them: inspect, static against import discovery."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hatch_flyte.discovery import DiscoveryResult, discover
from hatch_flyte.project import load_project

EXAMPLES = Path(__file__).resolve().parents[1] / "example_projects"
CLI = [sys.executable, "-m", "hatch_flyte.frontends.cli"]


def test_runtime_name_is_unresolved_statically_and_found_by_import(monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(EXAMPLES / "dynamic_envs")
    static = discover(project)
    assert {(e.name, e.attribute) for e in static.environments} == {
        ("static_jobs", "static_env"),
        (None, "regional"),
    }
    (unresolved,) = static.unresolved
    assert (unresolved.file, unresolved.line, unresolved.attribute) == ("dynamic_envs/jobs.py", 8, "regional")
    assert "run time" in unresolved.reason

    imported = dataclasses.replace(project, config=dataclasses.replace(project.config, discovery="import"))
    monkeypatch.setenv("FLYTE_REGION", "us")
    found = discover(imported)
    assert {(e.name, e.module, e.attribute) for e in found.environments} == {
        ("static_jobs", "dynamic_envs.jobs", "static_env"),
        ("jobs_us", "dynamic_envs.jobs", "regional"),
    }


@pytest.mark.parametrize("name", ["weather_pipeline", "ml_platform", "setuptools_etl"])
def test_static_and_import_discovery_agree_on_examples(name: str) -> None:
    project = load_project(EXAMPLES / name)
    static = discover(project)
    imported = discover(
        dataclasses.replace(project, config=dataclasses.replace(project.config, discovery="import"))
    )

    def key(result: DiscoveryResult) -> set[tuple[object, ...]]:
        return {(e.name, e.module, e.attribute, e.kind, e.depends_on, e.file) for e in result.environments}

    assert key(static) == key(imported)
    assert not static.unresolved and not imported.unresolved


def test_inspect_json_and_text() -> None:
    project = EXAMPLES / "ml_platform"
    data = json.loads(
        subprocess.run(
            [*CLI, "inspect", str(project), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert data["package"] == "ml_platform"
    assert data["root_dir"] == str(project / "src")
    deps = {e["name"]: e["depends_on"] for e in data["environments"]}
    assert deps == {
        "ml_base": [],
        "features": ["ml_base"],
        "training": ["features"],
        "serving": ["training", "ml_base"],
    }
    assert data["bundle"]["name"] == f"fast{data['bundle']['digest']}.tar.gz"
    # Config `ignores` leaves the notebook out; `include` puts the .flyteignored model card back.
    text = subprocess.run([*CLI, "inspect", str(project)], capture_output=True, text=True, check=True).stdout
    assert "ENVIRONMENT" in text and "ml_platform.training.train:training_env" in text
    assert "MODEL_CARD.md" in text and "explore.ipynb" not in text and "weights.bin" not in text
    assert data["bundle"]["files"] == 10
