"""The Ray Serve baseline for benchmarks/serving.py, at its best: its high-throughput mode
(`RAY_SERVE_THROUGHPUT_OPTIMIZED=1`, and `RAY_SERVE_ENABLE_HA_PROXY=1`: HAProxy sends requests
straight to the replicas), `REPLICAS` replicas, `@serve.batch`, serving the same scikit-learn
LogisticRegression as the other rows (same data, same params). Runs in a venv of its own
(.venv-bench-ray), never in mllib's.

python benchmarks/ray_serve_model.py PORT REPLICAS
Prints "ready" once it answers on http://127.0.0.1:PORT/predict; runs until killed.
"""

import os
import signal
import sys

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")

import numpy as np
import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=64)
class Classifier:
    def __init__(self) -> None:
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        X, y = make_classification(n_samples=2000, n_features=20, n_informative=8, random_state=42)
        X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
        self.model = LogisticRegression(C=1.0, max_iter=200).fit(X_train, y_train)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def predict(self, rows: list) -> list:
        labels = self.model.predict(np.asarray(rows, dtype=float))
        return [{"label": int(label)} for label in labels]

    async def __call__(self, request: Request) -> dict:
        return await self.predict((await request.json())["features"])


def main() -> None:
    port, replicas = int(sys.argv[1]), int(sys.argv[2])
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Classifier.options(num_replicas=replicas).bind(), route_prefix="/predict")
    print("ready", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
