"""The scaling benchmark's model (benchmarks/scale.py): each prediction sleeps for the seconds its
`delay_file` holds (read on every request, so the benchmark raises a version's latency while it
serves) and answers with its `tag`, so the client knows which version answered."""

import time

import mllib


class Paced:
    def __init__(self):
        self.tag = mllib.Param(1)
        self.delay_file = mllib.Param("delay.txt")
        self.trained = False

    def train(self):
        self.trained = True

    def evaluate(self):
        return {"tag": self.tag}

    def predict(self, request):
        try:
            with open(self.delay_file) as handle:
                time.sleep(float(handle.read() or 0))
        except FileNotFoundError:
            pass
        return {"tag": self.tag}
