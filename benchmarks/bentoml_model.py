"""The BentoML baseline for benchmarks/serving.py, at its best: adaptive batching
(`@bentoml.api(batchable=True)`) and one worker per CPU core (`workers="cpu_count"`), serving the
same scikit-learn LogisticRegression as the other rows (same data, same params). Runs in a venv
of its own (.venv-bench-bento), never in mllib's.

bentoml serve benchmarks.bentoml_model:Classifier --port PORT   (from the repository root)
Requests: POST /predict {"features": [[20 floats]]} (a batch of one row, as batchable APIs take).
"""

import bentoml
import numpy as np


@bentoml.service(workers="cpu_count", traffic={"timeout": 30})
class Classifier:
    def __init__(self) -> None:
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        X, y = make_classification(n_samples=2000, n_features=20, n_informative=8, random_state=42)
        X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
        self.model = LogisticRegression(C=1.0, max_iter=200).fit(X_train, y_train)

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)
    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)
