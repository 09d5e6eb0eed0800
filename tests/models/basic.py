"""A model touching every part of the contract: typed params, an env param, metrics, artifacts."""

import json
import os

import mllib


class Basic:
    def __init__(self):
        self.learning_rate = mllib.Param(0.1)
        self.epochs = mllib.Param(3)
        self.shuffle = mllib.Param(True)
        self.name = mllib.Param("base")
        self.layers = mllib.Param([8, 4])
        self.data_path = mllib.Param("default.csv", env="DATA_PATH")
        self.fail_in = mllib.Param("")
        self.weight = 0.0

    def train(self):
        if self.fail_in == "train":
            raise ValueError("asked to fail in train")
        print(
            f"params lr={self.learning_rate!r} epochs={self.epochs!r} shuffle={self.shuffle!r} "
            f"name={self.name!r} layers={self.layers!r} data_path={self.data_path!r}",
            flush=True,
        )
        for epoch in range(self.epochs):
            self.weight += self.learning_rate
            mllib.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
            mllib.log_metrics({"weight": self.weight})
        with open(os.path.join(mllib.artifact_dir(), "notes.json"), "w") as handle:
            json.dump({"epochs": self.epochs}, handle)
        with open("summary.txt", "w") as handle:  # written elsewhere, then kept with log_artifact
            handle.write(f"weight={self.weight}\n")
        mllib.log_artifact("summary.txt", name="reports/summary.txt")

    def evaluate(self):
        if self.fail_in == "evaluate":
            return {"accuracy": "high"}
        return {"accuracy": round(self.weight, 6), "loss": 1.0 / self.epochs}

    def predict(self, request):
        return {"y": request["x"] * self.weight}
