"""Finding the model class and its params by reading model.py, without running it."""

import pytest

from mllib.discovery import constructor_args, find_model
from mllib.errors import ModelDiscoveryError, NotFoundError

ONE = """
import mllib
RATE = 0.3

class Helper:
    pass

class Model:
    def __init__(self):
        self.lr = mllib.Param(RATE)
        self.n = mllib.Param(default=4, env="N")
        self.odd = mllib.Param(compute_default())
        self.plain = 5
    def train(self): ...
    def evaluate(self): ...
    def predict(self, r): ...
"""


def test_a_single_model_class_is_found_with_its_params(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(ONE)
    info = find_model(path)
    assert info.class_name == "Model"
    assert list(info.params) == ["lr", "n", "odd"]
    assert info.params["lr"].default == 0.3 and info.params["lr"].type_name == "float"
    assert info.params["n"].env == "N" and info.params["n"].type_name == "int"
    assert (
        info.params["odd"].type_name == "any"
        and info.params["odd"].shown_default == "compute_default()"
    )


def test_reading_the_file_never_runs_it(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("raise SystemExit('executed!')\n" + ONE)
    assert find_model(path).class_name == "Model"


def test_two_model_classes_are_ambiguous_and_the_error_says_how_to_pick(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        ONE + "\nclass Other:\n    def train(self): ...\n    def predict(self, r): ...\n"
    )
    with pytest.raises(ModelDiscoveryError) as info:
        find_model(path)
    assert "Model" in str(info.value) and "Other" in str(info.value)
    assert 'model = "model.py:Model"' in str(info.value)
    assert find_model(path, "Other").class_name == "Other"


def test_a_base_class_extended_in_the_same_file_is_not_a_candidate(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        ONE
        + "\nclass Tuned(Model):\n    def __init__(self):\n        super().__init__()\n        self.extra = mllib.Param(True)\n"
    )
    info = find_model(path)
    assert info.class_name == "Tuned"
    assert set(info.params) == {"lr", "n", "odd", "extra"}


def test_no_model_class_is_a_clear_error(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("class NotAModel:\n    def fit(self): ...\n")
    with pytest.raises(ModelDiscoveryError, match="defines train\\(\\) and predict\\(\\)"):
        find_model(path)


def test_a_missing_class_name_lists_the_classes(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(ONE)
    with pytest.raises(ModelDiscoveryError, match="classes found: Helper, Model"):
        find_model(path, "Nope")


def test_missing_file_and_syntax_error(tmp_path):
    with pytest.raises(NotFoundError):
        find_model(tmp_path / "absent.py")
    bad = tmp_path / "model.py"
    bad.write_text("class Model(:\n")
    with pytest.raises(ModelDiscoveryError, match=r"model\.py:1: syntax error"):
        find_model(bad)


BASE = """
import mllib
DEFAULT_LR = 0.2

class Base:
    def __init__(self):
        self.lr = mllib.Param(DEFAULT_LR)
    def train(self): ...
    def evaluate(self): ...
"""


@pytest.mark.parametrize(
    "import_line, base",
    [
        ("from base import Base", "Base"),
        ("from base import Base as Parent", "Parent"),
        ("import base", "base.Base"),
        ("import lib.base as lb", "lb.Base"),
        ("from lib import Base", "Base"),  # re-exported by lib/__init__.py
        ("from lib import base", "base.Base"),
    ],
)
def test_a_base_class_from_another_project_file_gives_its_methods_and_params(
    tmp_path, import_line, base
):
    (tmp_path / "base.py").write_text(BASE)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.py").write_text(BASE)
    (tmp_path / "lib" / "__init__.py").write_text("from .base import Base\n")
    path = tmp_path / "model.py"
    path.write_text(
        f"import mllib\n{import_line}\n\nclass Model({base}):\n"
        "    def __init__(self):\n        super().__init__()\n        self.epochs = mllib.Param(3)\n"
        "    def predict(self, r): ...\n"
    )
    info = find_model(path)
    assert info.class_name == "Model" and info.complete
    assert list(info.params) == ["lr", "epochs"] and info.params["lr"].default == 0.2
    assert {"train", "evaluate", "predict"} <= info.methods


def test_a_library_base_class_leaves_the_model_incomplete_and_the_error_says_to_name_it(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        "from somelib import Trainer\n\nclass Model(Trainer):\n    def predict(self, r): ...\n"
    )
    with pytest.raises(ModelDiscoveryError) as info:
        find_model(path)
    assert 'model = "model.py:Model"' in (info.value.hint or "")
    named = find_model(path, "Model")
    assert not named.complete and named.methods == {"predict"}


def test_import_cycles_and_unparsable_project_files_do_not_break_discovery(tmp_path):
    (tmp_path / "a.py").write_text("from b import Loop\n")  # a re-export cycle
    (tmp_path / "b.py").write_text("from a import Loop\n")
    (tmp_path / "broken.py").write_text("class Broken(:\n")
    (tmp_path / "base.py").write_text("from model import Helper\nclass Base(Helper): ...\n")
    path = tmp_path / "model.py"
    path.write_text(
        "from a import Loop\nfrom broken import Broken\nfrom base import Base\n\n"
        "class Helper:\n    def train(self): ...\n\n"
        "class Model(Base, Loop, Broken):\n    def predict(self, r): ...\n"
    )
    info = find_model(path)
    assert info.class_name == "Model" and not info.complete and "train" in info.methods


@pytest.mark.parametrize(
    "signature, needed",
    [("self, data_path", "data_path"), ("self, x, y=1, *, z", "x, z")],
)
def test_an_init_that_needs_arguments_is_refused_before_anything_runs(tmp_path, signature, needed):
    path = tmp_path / "model.py"
    path.write_text(
        f"class Model:\n    def __init__({signature}): ...\n"
        "    def train(self): ...\n    def predict(self, r): ...\n"
    )
    with pytest.raises(ModelDiscoveryError, match=f"needs argument\\(s\\) {needed}") as info:
        find_model(path)
    assert "mllib.Param" in info.value.hint


def test_an_init_with_only_optional_arguments_is_fine(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        "class Model:\n    def __init__(self, size=3, *args, verbose=False, **kw): ...\n"
        "    def train(self): ...\n    def predict(self, r): ...\n"
    )
    assert find_model(path).class_name == "Model"


@pytest.mark.parametrize(
    "header, base",
    [
        ("import litserve as ls", "ls.LitAPI"),
        ("import litserve", "litserve.LitAPI"),
        ("from litserve import LitAPI", "LitAPI"),
    ],
)
def test_a_litserve_api_is_known_for_what_it_is_and_found_alone_in_its_file(tmp_path, header, base):
    path = tmp_path / "api.py"
    path.write_text(
        f"{header}\n\nclass Helper:\n    pass\n\n"
        f"class MyAPI({base}):\n    def setup(self, device): ...\n    def predict(self, x): ...\n"
    )
    info = find_model(path)
    assert (info.class_name, info.litapi, info.complete) == ("MyAPI", True, True)
    assert "train" not in info.methods and "predict" in info.methods


def test_another_library_base_is_not_a_litserve_api(tmp_path):
    path = tmp_path / "api.py"
    path.write_text(
        "import other as ls\n\nclass MyAPI(ls.LitAPI):\n    def predict(self, x): ...\n"
    )
    info = find_model(path, "MyAPI")
    assert (info.litapi, info.complete) == (False, False)


def test_constructor_args_are_the_literal_keywords_the_file_creates_its_class_with(tmp_path):
    path = tmp_path / "api.py"
    path.write_text(
        "class MyAPI:\n    pass\n\n"
        "def build(n):\n    return MyAPI(max_batch_size=n)\n\n"
        'if __name__ == "__main__":\n'
        "    api = MyAPI(max_batch_size=8, batch_timeout=0.05)\n"
    )
    assert constructor_args(path, "MyAPI") == {"max_batch_size": 8, "batch_timeout": 0.05}
    assert constructor_args(path, "Other") == {}
