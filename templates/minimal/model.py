"""A minimal mllib model: a line y = w*x + b fitted by gradient descent, in plain Python.

Try it:  mllib train model.py --evaluate --learning_rate=0.1
"""

import csv
import random

import mllib


class LinearModel:
    def __init__(self):
        self.learning_rate = mllib.Param(0.05)
        self.epochs = mllib.Param(100)
        self.batch_size = mllib.Param(16)
        # Data paths come from the environment (.env.local here, .env.remote on agents).
        self.train_data_path = mllib.Param("data/train.csv", env="TRAIN_DATA")
        self.test_data_path = mllib.Param("data/test.csv", env="TEST_DATA")
        self.w = 0.0
        self.b = 0.0

    @staticmethod
    def _load(path):
        with open(path, newline="") as handle:
            return [(float(row["x"]), float(row["y"])) for row in csv.DictReader(handle)]

    def _mse(self, data):
        return sum((self.w * x + self.b - y) ** 2 for x, y in data) / len(data)

    def train(self):
        data = self._load(self.train_data_path)
        print(f"training on {len(data)} rows from {self.train_data_path}")
        for epoch in range(self.epochs):
            random.shuffle(data)  # mllib seeds `random`, so runs are reproducible
            for start in range(0, len(data), self.batch_size):
                batch = data[start : start + self.batch_size]
                grad_w = sum(2 * (self.w * x + self.b - y) * x for x, y in batch) / len(batch)
                grad_b = sum(2 * (self.w * x + self.b - y) for x, y in batch) / len(batch)
                self.w -= self.learning_rate * grad_w
                self.b -= self.learning_rate * grad_b
            mllib.log_metric("loss", self._mse(data), step=epoch)
        print(f"learned y = {self.w:.3f} * x + {self.b:.3f}")

    def evaluate(self):
        data = self._load(self.test_data_path)
        mse = self._mse(data)
        mean_y = sum(y for _, y in data) / len(data)
        total = sum((y - mean_y) ** 2 for _, y in data) / len(data)
        return {"mse": mse, "r2": 1 - mse / total}

    def predict(self, request):
        x = request["x"]
        if isinstance(x, list):
            return {"y": [self.w * v + self.b for v in x]}
        return {"y": self.w * x + self.b}


if __name__ == "__main__":
    # Outside mllib: build the model with its params resolved, then call it like any class.
    model = mllib.create(LinearModel, epochs=20)
    model.train()
    print(model.evaluate())
