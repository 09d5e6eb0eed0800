"""The node's side of a shipped job: `python -m mllib.runtime.ray.node`, in Ray's working_dir.

Ray unpacks the job's working_dir (mllib.runtime.ray.shipping) and starts this in it: the run
folder is copied to a private scratch folder (Ray keeps the unpacked package for later jobs of
the same hash, so nothing is written into it and the secrets are taken out of it), the data
variables are pointed at the packages Ray unpacked for the job's py_modules, and the one worker
command runs in the code folder. Its output goes to the job's log as it comes; each event it
writes goes there too as a record (mllib.runtime.ray.channel), then the model, artifacts and
prediction as a tar.gz in base64 records, at most `[ray] max_output_mb` of it (the manifest's
max_output_bytes): larger outputs are not sent, and a run that succeeded fails as a user error
saying so (the head keeps the job's log whole, on its disk). This exits as the worker
did (its code, or its killing signal), so Ray's driver_exit_code is the worker's; a SIGTERM
(Ray's stop_job) is passed on to the worker, whose outputs so far still come back.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mllib.protocol.argv import worker_argv
from mllib.protocol.events import PARAMS, report_failure
from mllib.protocol.failure import EXIT_SYSTEM_ERROR, EXIT_USER_ERROR, USER_ERROR
from mllib.protocol.folder import RunFolder
from mllib.runtime.ray.channel import END, EVENT, OUTPUTS, record
from mllib.runtime.ray.sealed import sealed_copy

MANIFEST = "mllib-ship.json"  # in the working_dir: the attempt's nonce and its data packages
CODE = "code"
RUN = "run"
RETURNED = (RunFolder.MODEL, RunFolder.ARTIFACTS, "output")  # what comes back, if made
CHUNK = 36_000  # bytes per outputs record (48,000 in base64: a multiple of 3 bytes, no padding)
OUTPUTS_TAR = "outputs.tar.gz"  # in the scratch folder, beside the run folder
TAIL_S = 0.2
DEFAULT_MAX_OUTPUT = 256_000_000  # [ray] max_output_mb's default, for a manifest without it


class Relay:
    """The worker's output and events, written into the job's log by one writer."""

    def __init__(self, nonce: str, events: Path) -> None:
        self.nonce = nonce
        self.events = events
        self.offset = 0
        self.partial = b""
        self.lock = threading.Lock()
        self.out = sys.stdout.buffer
        self.given: dict[str, str] = {}  # a data path here -> the path the run was given

    def write(self, data: bytes) -> None:
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def send(self, kind: str, payload: Any) -> None:
        self.write(record(self.nonce, kind, payload).encode())

    def copy(self, stream: Any) -> None:
        """The worker's merged stdout and stderr, as it comes."""
        while data := os.read(stream.fileno(), 65536):
            self.write(data)

    def forward_events(self) -> None:
        """The events file's complete lines written since the last call."""
        try:
            with open(self.events, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.send(EVENT, self._as_given(line.decode("utf-8", errors="replace")))

    def _as_given(self, line: str) -> str:
        """A params event with each data path of this node as the run was given it."""
        if not self.given or f'"{PARAMS}"' not in line:
            return line
        try:
            event = json.loads(line)
            if event.get("type") != PARAMS:
                return line
            values = event["values"]
            event["values"] = {
                k: self.given.get(v, v) if isinstance(v, str) else v for k, v in values.items()
            }
        except (ValueError, KeyError, AttributeError, TypeError):
            return line
        return json.dumps(event)

    def send_outputs(self, run_dir: Path, limit: int) -> str | None:
        """Send the run's outputs as a tar.gz, unless it is over `limit` bytes: then why not."""
        packed = run_dir.parent / OUTPUTS_TAR
        with tarfile.open(packed, mode="w:gz") as tar:
            for name in RETURNED:
                if (run_dir / name).exists():
                    tar.add(run_dir / name, arcname=name)
        size = packed.stat().st_size
        if size > limit:
            return (
                f"the run's model, artifacts and prediction are {size / 1e6:.1f} MB compressed, "
                f"over [ray] max_output_mb = {limit / 1e6:g}, the most a shipped run sends back "
                "through its job's log"
            )
        with open(packed, "rb") as handle:
            while chunk := handle.read(CHUNK):
                self.send(OUTPUTS, base64.b64encode(chunk).decode("ascii"))
        self.send(END, {"bytes": size})
        return None


def data_paths(data: dict[str, dict[str, str]]) -> dict[str, str]:
    """Each data variable's path on this node: the read-only copy (sealed.py) of its package (a
    py_modules entry Ray unpacked and put on PYTHONPATH), then the file or folder's own name."""
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    found = {}
    for variable, package in data.items():
        name = package["uri"].rsplit("/", 1)[-1].removesuffix(".zip")
        folder = next((e for e in entries if Path(e).name == name), None)
        if folder is None:
            raise LookupError(f"Ray did not unpack the package of {variable} ({package['uri']})")
        found[variable] = str(sealed_copy(Path(folder)) / package["name"])
    return found


def run(package: Path, manifest: dict[str, Any], scratch: Path) -> int:
    """Run the worker of the package in `scratch`; its exit code (negative: its signal)."""
    run_dir = scratch / RUN
    shutil.copytree(package / RUN, run_dir)
    shipped = RunFolder(package / RUN)
    shipped.discard_secret_params()  # this attempt's copy has them; Ray's cache keeps none
    folder = RunFolder(run_dir)
    relay = Relay(manifest["nonce"], folder.events_file)
    given = folder.take_job_env()
    try:
        here = data_paths(manifest["data"])
    except (LookupError, OSError) as exc:
        relay.write(f"mllib: {exc}\n".encode())
        return EXIT_SYSTEM_ERROR
    # the params record the data paths as the run was given them, not this node's copies
    relay.given = {path: given[name] for name, path in here.items() if name in given}
    folder.write_job_env({**given, **here})
    code = package / CODE
    worker = subprocess.Popen(
        worker_argv(sys.executable, run_dir, code),
        cwd=code,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda sig, _frame: worker.send_signal(sig))
    copier = threading.Thread(target=relay.copy, args=(worker.stdout,), daemon=True)
    copier.start()
    while worker.poll() is None:
        relay.forward_events()
        time.sleep(TAIL_S)
    copier.join()
    relay.forward_events()
    refused = relay.send_outputs(run_dir, manifest.get("max_output_bytes", DEFAULT_MAX_OUTPUT))
    if refused is None:
        return worker.returncode
    if worker.returncode != 0:  # the run failed already: that is its outcome
        relay.write(f"mllib: {refused}: not sent\n".encode())
        return worker.returncode
    report_failure(
        folder.events_file,
        USER_ERROR,
        f"{refused}. Raise it in mllib.toml, keep large files out of the model and artifacts, "
        'or give the nodes a filesystem they share with this machine ([ray] files = "shared")',
    )
    relay.forward_events()
    return EXIT_USER_ERROR


def main() -> None:
    package = Path.cwd()
    manifest = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
    # named for the run: the worker's command line says which run it is (`ps`, a reaper)
    scratch = Path(tempfile.mkdtemp(prefix=f"mllib-run-{manifest.get('run_id', '')}-"))
    try:
        code = run(package, manifest, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code < 0:  # end as the worker ended: Ray reads the signal as the job's exit
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # their handlers cannot be set
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
