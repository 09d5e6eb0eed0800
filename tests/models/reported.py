"""A model that reports to Sentry, as the seed's model.py does, and fails on request: in train
(its own bug, or running out of memory), in predict (one request), or in predict_batch alone."""

from mllib import sentry_plugin

sentry_plugin.enable()

import mllib  # noqa: E402


class Reported:
    def __init__(self):
        self.learning_rate = mllib.Param(0.1)
        self.api_token = mllib.Param("")  # a secret: its name says so
        self.fail = mllib.Param("")  # "", "train", "memory"
        self.batch_bug = mllib.Param(False)

    def train(self):
        if self.fail == "train":
            raise ValueError(f"training diverged (token {self.api_token})")
        if self.fail == "memory":
            raise MemoryError("no room for the activations")

    def predict(self, request):
        if request.get("fail"):
            raise ValueError(f"cannot predict {request['fail']}")
        return {"y": request["x"] * 2}

    def predict_batch(self, requests):
        if self.batch_bug:
            raise RuntimeError("predict_batch lost count")
        return [self.predict(request) for request in requests]
