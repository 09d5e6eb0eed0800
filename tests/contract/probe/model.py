"""A model that exercises the whole run contract; the tests pick its behaviour with `mode`."""

import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import mllib


class Probe:
    def __init__(self):
        self.lr = mllib.Param(0.1)
        self.epochs = mllib.Param(3)
        # ok | raise | sigkill | sleep | nap | oom | write_data | big_artifact
        self.mode = mllib.Param("ok")
        self.data_path = mllib.Param("data/train.txt", env="DATA_PATH")
        self.extra = mllib.Param("default", env="EXTRA")
        self.tag = mllib.Param("none")

    def train(self):
        print("train says hello on stdout")
        print("train says hello on stderr", file=sys.stderr)
        if self.mode == "raise":
            self._fail()
        if self.mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "oom":
            hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]
            print(len(hoard))
        if self.mode == "nap":
            time.sleep(3)
        if self.mode == "sleep":
            print("sleeping", flush=True)
            while True:
                time.sleep(0.05)
        with open(self.data_path) as handle:
            self.data = handle.read()
        for step in range(self.epochs):
            mllib.log_metric("loss", self.lr / (step + 1), step=step)
        mllib.log_metrics({"data_chars": len(self.data), "b": 2.0})
        out = Path(mllib.artifact_dir())
        (out / "notes.txt").write_text(f"lr={self.lr}\n")
        names = (
            "MLLIB_RUN_ID",
            "PYTHONHASHSEED",
            "SECRET_SETTING",
            "EXTRA",
            "DATA_PATH",
            "OMP_NUM_THREADS",
        )
        seen = {k: os.environ.get(k) for k in names}
        (out / "env.json").write_text(json.dumps({**seen, "cwd": os.getcwd()}))
        logged = Path(tempfile.mkdtemp()) / "logged.txt"
        logged.write_text("logged with log_artifact\n")
        mllib.log_artifact(str(logged))
        if self.mode == "write_data":
            self._try_write(Path(self.data_path))
        if self.mode == "big_artifact":  # 2 MB that no compression makes smaller
            (out / "big.bin").write_bytes(os.urandom(2_000_000))
        Path("written-in-project.txt").write_text("hello\n")
        self.weights = [random.random() for _ in range(3)]

    def _try_write(self, path):
        try:
            with open(path, "a") as handle:
                handle.write("appended by the run\n")
            result = "written"
        except OSError as exc:
            result = type(exc).__name__ + ": " + exc.strerror
        (Path(mllib.artifact_dir()) / "write.txt").write_text(result)

    def _fail(self):
        raise ValueError("bad value in train")

    def evaluate(self):
        return {"score": sum(self.weights), "chars": float(len(self.data))}

    def predict(self, request):
        return {"y": request["x"] * 2, "weights": self.weights}
