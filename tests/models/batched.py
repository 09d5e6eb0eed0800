"""A model with predict_batch for the micro-batching tests: each answer says which call made it
and how many requests that call held; a request can hold its batch until a file exists, fail
the whole batch, or fail in predict() too."""

import os
import time

import mllib


class Batched:
    def __init__(self):
        self.offset = mllib.Param(0.0)
        self.weights = None

    def train(self):
        self.weights = [2.0]

    def _answer(self, request, how, size):
        return {"y": request["x"] * self.weights[0] + self.offset, "id": request.get("id"),
                "by": how, "batch_size": size, "pid": os.getpid()}  # fmt: skip

    def predict(self, request):
        if request.get("fail"):
            raise ValueError(f"request {request.get('id')} asked to fail")
        return self._answer(request, "predict", 1)

    def predict_batch(self, requests):
        for request in requests:
            if request.get("hold"):  # the test opens the gate once the others are on their way
                deadline = time.monotonic() + 30
                while not os.path.exists(request["hold"]) and time.monotonic() < deadline:
                    time.sleep(0.01)
        if any(request.get("fail") or request.get("fail_batch") for request in requests):
            raise RuntimeError("this batch cannot be predicted")
        if any(request.get("short") for request in requests):
            return [self._answer(r, "predict_batch", len(requests)) for r in requests[1:]]
        return [self._answer(r, "predict_batch", len(requests)) for r in requests]
