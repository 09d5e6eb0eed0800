"""The parts of shipping a run to Ray that need no cluster: the records a shipped job's log
carries (however Ray splits the log into chunks) and which heads get files shipped by default.
(tests/ray/test_shipping.py ships real runs to a head that cannot see this machine's files.)"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from mllib.config import Config
from mllib.errors import ConfigError
from mllib.protocol.folder import RunFolder
from mllib.runtime.ray.channel import END, EVENT, OUTPUTS, Reader, record
from mllib.runtime.ray.settings import RaySettings
from mllib.runtime.ray.shipping import Collector

LOG = (
    "first line\n"
    "half a line "
    + record("n0nce", EVENT, '{"type": "metric", "name": "loss"}')
    + "and its end\n"
    + record("other", EVENT, "a record of another attempt is output")
    + "\x1emllib-ray not a record\n"
    + record("n0nce", END, {"bytes": 0})
    + "last"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(LOG)])
def test_records_are_taken_out_however_the_log_is_split(size: int) -> None:
    reader = Reader("n0nce")
    out, found = "", []
    for start in range(0, len(LOG), size):
        text, records = reader.feed(LOG[start : start + size])
        out += text
        found += records
    out += reader.flush()

    assert out == (
        "first line\nhalf a line and its end\n"
        + record("other", EVENT, "a record of another attempt is output")
        + "\x1emllib-ray not a record\nlast"
    )
    assert found == [(EVENT, '{"type": "metric", "name": "loss"}'), (END, {"bytes": 0})]


def _outputs(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_collector_writes_events_and_unpacks_outputs_into_the_run_folder(
    tmp_path: Path,
) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    collector = Collector(folder, "n0nce", limit=1_000_000)
    encoded = _outputs({"model/model.pkl": b"weights", "artifacts/notes.txt": b"lr=0.1\n"})
    event = json.dumps({"type": "metric", "name": "loss", "value": 0.5})

    out = collector.feed(
        "hello\n"
        + record("n0nce", EVENT, event)
        + "".join(record("n0nce", OUTPUTS, encoded[i : i + 10]) for i in range(0, len(encoded), 10))
        + record("n0nce", END, {"bytes": 1})
    )

    assert out == "hello\n"
    assert folder.events_file.read_text() == event + "\n"
    assert (folder.model_dir / "model.pkl").read_bytes() == b"weights"
    assert (folder.artifact_dir / "notes.txt").read_text() == "lr=0.1\n"


def test_outputs_that_would_leave_the_run_folder_are_refused_in_the_log(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    collector = Collector(folder, "n0nce", limit=1_000_000)
    encoded = _outputs({"../escaped.txt": b"x"})

    out = collector.feed(record("n0nce", OUTPUTS, encoded) + record("n0nce", END, {}))

    assert out.startswith("mllib: the job's outputs came back damaged: ")
    assert not (tmp_path / "escaped.txt").exists()


def test_the_collector_keeps_no_more_outputs_than_max_output_mb(tmp_path: Path) -> None:
    """A node that does not keep to the limit (another mllib's) cannot fill this machine."""
    small, large = RunFolder(tmp_path / "small"), RunFolder(tmp_path / "large")
    for folder in (small, large):
        folder.path.mkdir()

    def send(folder: RunFolder, size: int) -> str:
        encoded = _outputs({"artifacts/big.bin": os.urandom(size)})  # no compression shrinks it
        chunks = [encoded[i : i + 48_000] for i in range(0, len(encoded), 48_000)]
        log = "".join(record("n0nce", OUTPUTS, chunk) for chunk in chunks)
        return Collector(folder, "n0nce", limit=100_000).feed(log + record("n0nce", END, {}))

    assert send(small, 50_000) == ""
    said = send(large, 150_000)

    assert (small.artifact_dir / "big.bin").stat().st_size == 50_000
    assert said == (
        "mllib: the job's outputs were not kept: they are over [ray] max_output_mb (0.1 MB)\n"
    )
    assert list(large.path.iterdir()) == []  # nothing of them, and no spool file left


@pytest.mark.parametrize(
    ("address", "files", "ships"),
    [
        ("http://127.0.0.1:8265", "auto", False),
        ("http://localhost:8265", "auto", False),
        ("http://[::1]:8265", "auto", False),
        ("http://head.example:8265", "auto", True),
        ("http://10.0.0.7:8265", "auto", True),
        ("http://127.0.0.1:8265", "ship", True),
        ("http://10.0.0.7:8265", "shared", False),
    ],
)
def test_files_are_shipped_to_a_head_that_is_not_on_this_machine(
    address: str, files: str, ships: bool
) -> None:
    assert RaySettings(address=address, files=files).ships is ships


def test_an_unknown_files_mode_says_which_there_are(tmp_path: Path) -> None:
    config = Config(tmp_path / "mllib.toml", {"ray": {"files": "nfs"}})

    with pytest.raises(ConfigError, match="files must be one of auto, ship, shared, got 'nfs'"):
        RaySettings.from_config(config)
