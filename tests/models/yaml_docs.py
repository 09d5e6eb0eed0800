"""A model with a third-party dependency (PyYAML, imported inside train) that prints where its
Python lives: a venv built for the project, or the environment mllib runs in."""

import sys

import mllib


class Docs:
    def __init__(self):
        self.n = mllib.Param(3)

    def train(self):
        import yaml

        print("prefix", sys.prefix, flush=True)
        self.doc = yaml.safe_dump({"n": self.n})
        mllib.log_metric("chars", len(self.doc))

    def evaluate(self):
        return {"chars": len(self.doc)}

    def predict(self, request):
        return self.doc
