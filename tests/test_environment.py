"""environment.yml (conda users) and pyproject.toml (pip) describe the same environment."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement_names(requirements):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = set(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        pip_side |= set(extra)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs one pip: section"
    conda_side = set(pip_lists[0])
    assert requirement_names(conda_side) == requirement_names(pip_side)
    assert conda_side == pip_side, "the version pins must match too"
    assert any(str(d).startswith("python=3.11") for d in environment["dependencies"])
