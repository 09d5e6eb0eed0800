"""Save the sklearn template's model (same data, same params) as an MLflow model, for
`mlflow models serve` in benchmarks/serving.py. Runs in the benchmark venv (.venv-bench).

python benchmarks/mlflow_model.py OUTPUT_DIR
"""

import sys

import mlflow.sklearn
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

X, y = make_classification(n_samples=2000, n_features=20, n_informative=8, random_state=42)
X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
model = LogisticRegression(C=1.0, max_iter=200).fit(X_train, y_train)
mlflow.sklearn.save_model(model, sys.argv[1])
