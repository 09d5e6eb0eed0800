"""A model for serving tests: numpy and pandas results, and requests that make predict fail
or refuse them (mllib.BadRequest), return something JSON cannot hold, sleep, or kill its worker. Loading it can be slowed or broken,
and its latency raised while it serves: with `delay_file`, each prediction first sleeps for the
number of seconds that file holds (written by the test, read on every request)."""

import os
import time

import mllib


class Opaque:
    """Not JSON-serialisable."""


class Served:
    def __init__(self):
        self.bias = mllib.Param(0.0)
        self.load_delay = mllib.Param(0.0)
        self.broken = mllib.Param(False)
        self.delay_file = mllib.Param("")
        self.weights = None

    def train(self):
        self.weights = [1.0, 2.0]

    def __setstate__(self, state):  # runs when a server loads the saved model
        self.__dict__.update(state)
        if self.broken:
            raise RuntimeError("this model refuses to load")
        time.sleep(self.load_delay)

    def evaluate(self):  # `--best score` picks the version with the highest bias
        return {"score": self.bias}

    def predict(self, request):
        import numpy as np
        import pandas as pd

        if self.delay_file:
            try:
                with open(self.delay_file) as handle:
                    time.sleep(float(handle.read() or 0))
            except FileNotFoundError:
                pass
        if request.get("fail"):
            raise ValueError("asked to fail")
        if request.get("refuse"):  # the caller's mistake: a 4xx with the model's own words
            raise mllib.BadRequest("expected a list under 'x'", status=request["refuse"])
        if request.get("opaque"):
            return {"value": Opaque()}
        if request.get("crash"):
            os._exit(13)
        if request.get("sleep"):
            if request.get("started"):  # a file the test waits for: the request is in predict()
                open(request["started"], "w").close()
            time.sleep(request["sleep"])
        x = np.asarray(request["x"], dtype=float)
        return {
            "y": x * 2 + self.bias,
            "total": np.float32(x.sum()),
            "rows": pd.DataFrame({"x": x, "big": x > 1}),
            "bias": self.bias,
            "worker_pid": os.getpid(),
        }
