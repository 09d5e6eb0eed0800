"""Reading a project's dependencies and pinning them to the host's versions (no Docker needed)."""

from __future__ import annotations

import importlib.metadata
import urllib.request
from pathlib import Path

import pytest

from mllib.config import Config
from mllib.runtime.engine import ImageBuildError
from mllib.runtime.requirements import Requirement, host_pins, project_requirements
from mllib.runtime.wheels import local_wheels, mllib_wheel, serve_wheels
from tests.runtime.locks import uv_lock


def _config(packages: list) -> Config:
    return Config(Path("mllib.toml"), {"runtime": {"packages": packages}})


def test_requirements_from_every_source_in_order(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# comment\nscikit-learn>=1.3  # inline comment\n-r extra.txt\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
    )
    (tmp_path / "extra.txt").write_text("numpy \\\n  >=1.24\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["orjson"]\n')

    found = project_requirements(tmp_path, _config(["scikit-learn>=1.3", "torch"]))

    assert [(r.text, r.origin) for r in found] == [
        ("scikit-learn>=1.3", "requirements.txt:2"),
        ("numpy>=1.24", "extra.txt:1"),
        ("--extra-index-url https://download.pytorch.org/whl/cpu", "requirements.txt:4"),
        ("orjson", "pyproject.toml [project] dependencies"),
        ("torch", "mllib.toml [runtime] packages"),
    ]


def test_files_written_by_hand_are_read_as_pip_reads_them(tmp_path: Path) -> None:
    """What the hand-written parser refused: a tab before a comment, -c constraints, --hash
    options on continuation lines, markers, --pre and other options pip takes."""
    (tmp_path / "requirements.txt").write_text(
        "numpy>=1.24\t# tab, then a comment\n"
        "-c constraints.txt\n"
        "--pre\n"
        "orjson==3.10.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n"
        'pandas; python_version >= "3.8"\n'
        "--use-feature truststore\n"
    )
    (tmp_path / "constraints.txt").write_text("scipy<2  # keep scipy 1.x\n")

    found = project_requirements(tmp_path, _config([]))

    assert [(r.text, r.origin, r.hashes, r.constraint) for r in found] == [
        ("numpy>=1.24", "requirements.txt:1", (), False),
        ("scipy<2", "constraints.txt:1", (), True),
        ("orjson==3.10.0", "requirements.txt:4", ("sha256:aaaa", "sha256:bbbb"), False),
        ('pandas; python_version >= "3.8"', "requirements.txt:7", (), False),
        ("--pre", "requirements.txt:3", (), False),
    ]
    assert found[2].line == "orjson==3.10.0 --hash=sha256:aaaa --hash=sha256:bbbb"


def test_a_lock_from_uv_pip_compile_keeps_its_hashes(tmp_path: Path) -> None:
    """The most common locked format, made by uv itself from the host's package sources."""
    (tmp_path / "requirements.txt").write_text(uv_lock(tmp_path, ["cloudpickle"]))

    found = project_requirements(tmp_path, _config([]))

    cloudpickle = next(r for r in found if r.name == "cloudpickle")
    assert cloudpickle.text == f"cloudpickle=={importlib.metadata.version('cloudpickle')}"
    assert cloudpickle.origin.startswith("requirements.txt:") and cloudpickle.hashes
    assert all(h.startswith("sha256:") and len(h) == 71 for h in cloudpickle.hashes)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("scikit-learn>>1", "requirements.txt:1: 'scikit-learn>>1' is not a valid requirement"),
        ("-e .", "requirements.txt:1: '-e .' installs a folder of this machine"),
        ("./src/pkg", "installs a folder of this machine"),
        ("-r missing.txt", "Could not open requirements file"),
        ("--index-url /srv/simple", "is not an http(s) location"),
        ("pkg @ file:///home/me/pkg.whl", "points at a file on this machine"),
        ("--extra-index-url https://me:pw@example.org/simple", "carries credentials"),
    ],
)
def test_bad_requirement_lines_are_user_errors(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "requirements.txt").write_text(line + "\n")

    with pytest.raises(
        ImageBuildError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as caught:
        project_requirements(tmp_path, _config([]))

    assert caught.value.failure_class == "user_error"
    assert "pw" not in str(caught.value)


def test_packages_must_be_strings(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"packages\[0\] is 3"):
        project_requirements(tmp_path, _config([3]))


def test_pins_follow_dependencies_and_respect_specifiers() -> None:
    sklearn = importlib.metadata.version("scikit-learn")
    numpy = importlib.metadata.version("numpy")

    pins = host_pins(["scikit-learn", "orjson", "not-installed-anywhere-pkg"])

    assert pins["scikit-learn"] == sklearn
    assert pins["numpy"] == numpy  # a dependency of scikit-learn, pinned too
    assert "not-installed-anywhere-pkg" not in pins
    assert "numpy" not in host_pins([f"numpy!={numpy}"])  # the user asked for another version
    # a lock's or a constraint's version wins over the host's, for dependencies too
    locked = [Requirement("numpy==1.0.0", "requirements.txt:3")]
    assert "numpy" not in host_pins(["scikit-learn"], declared=locked)
    assert "mllib" not in host_pins(["mllib"])  # an editable install no index can provide


def test_local_wheels_of_pinned_versions_are_served_over_http(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    for name in ("demo_pkg-1.0-py3-none-any.whl", "demo_pkg-2.0-py3-none-any.whl", "x.txt"):
        (links / name).write_bytes(b"wheel " + name.encode())
    index = tmp_path / "simple"
    (index / "other").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "other-3.1-py3-none-any.whl").write_bytes(b"other")
    (index / "other" / "index.html").write_text(
        '<a href="../../files/other-3.1-py3-none-any.whl#sha256=00">other-3.1</a>'
    )

    wheels = local_wheels({"demo-pkg": "1.0", "other": "3.1"}, [links], [index])

    assert [w.name for w in wheels] == [
        "demo_pkg-1.0-py3-none-any.whl",
        "other-3.1-py3-none-any.whl",
    ]
    with serve_wheels(wheels) as url:
        assert url is not None
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        served = urllib.request.urlopen(url + wheels[0].name, timeout=10).read()
    assert "other-3.1-py3-none-any.whl" in page
    assert served == b"wheel demo_pkg-1.0-py3-none-any.whl"


def test_mllib_wheel_holds_the_running_mllib(tmp_path: Path) -> None:
    import zipfile

    import mllib

    wheel = mllib_wheel(tmp_path)

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(f"mllib-{mllib.__version__}.dist-info/RECORD").decode()
    assert "mllib/worker/main.py" in names and "mllib/runtime/docker.py" in names
    assert not any("__pycache__" in name for name in names)
    assert f"mllib-{mllib.__version__}.dist-info/RECORD,," in record
    assert mllib_wheel(tmp_path / ".." / tmp_path.name).read_bytes() == wheel.read_bytes()
