"""A project's imports become its image's packages, so no requirements.txt is needed for them."""

from __future__ import annotations

from pathlib import Path

from mllib.config import Config
from mllib.runtime.env_plan import _detected
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

    detected = _detected(root, Config(None, {}), declared, "train", None)

    assert "numpy" not in {r.name for r in detected}
    assert "scikit-learn" in {r.name for r in detected}
    off = Config(None, {"runtime": {"detect_imports": False}})
    assert _detected(root, off, declared, "train", None) == []


def test_evaluation_and_serving_get_what_their_own_code_reaches(tmp_path: Path) -> None:
    """The seed's example: numpy and yaml in train, pandas in evaluate (through a helper),
    cloudpickle in predict; a trained model's pickle may name more."""
    (tmp_path / "model.py").write_text(
        "import json\n"
        "class Model:\n"
        "    def train(self):\n        import numpy, yaml\n"
        "    def evaluate(self):\n        return self._frame()\n"
        "    def _frame(self):\n        import pandas\n"
        "    def predict(self, request):\n        import cloudpickle\n"
    )

    def names(step: str, extra: list[str] | None = None) -> set[str]:
        return set(imported_distributions(tmp_path, step=step, extra_modules=extra))

    assert names("train") == {"numpy", "PyYAML", "pandas", "cloudpickle"}
    assert names("evaluate") == {"pandas"}
    assert names("serve") == {"cloudpickle"}
    assert names("serve", ["sklearn.linear_model._logistic"]) == {"cloudpickle", "scikit-learn"}
