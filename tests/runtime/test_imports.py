"""A project's imports become its image's packages, so no requirements.txt is needed for them."""

from __future__ import annotations

from pathlib import Path

from mllib.config import Config
from mllib.runtime.images import _detected
from mllib.runtime.imports import imported_distributions
from mllib.runtime.requirements import Requirement


def _project(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(
        "import os, json\nimport numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "import helpers\nfrom . import sibling\nimport not_installed_anywhere\nimport mllib\n"
        "def f():\n    import yaml\n"
    )
    (tmp_path / "helpers.py").write_text("import cloudpickle\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "x.py").write_text("import torch\n")  # not the project's code
    return tmp_path


def test_imports_map_to_the_distributions_installed_here(tmp_path: Path) -> None:
    found = imported_distributions(_project(tmp_path))

    assert found == {
        "numpy": "model.py imports numpy",
        "scikit-learn": "model.py imports sklearn",
        "PyYAML": "model.py imports yaml",
        "cloudpickle": "helpers.py imports cloudpickle",
    }


def test_declared_requirements_win_and_detection_can_be_turned_off(tmp_path: Path) -> None:
    root = _project(tmp_path)
    declared = [Requirement("numpy<3", "requirements.txt:1")]

    detected = _detected(root, Config(None, {}), declared)

    assert "numpy" not in {r.name for r in detected}
    assert "scikit-learn" in {r.name for r in detected}
    assert _detected(root, Config(None, {"runtime": {"detect_imports": False}}), declared) == []
