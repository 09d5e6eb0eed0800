"""A scikit-learn model for mllib: logistic regression on a generated classification problem.

Needs scikit-learn (`pip install 'mllib[sklearn]'`). Try it:  mllib train model.py --evaluate --C=0.5
"""

import mllib


class Classifier:
    def __init__(self):
        self.C = mllib.Param(1.0)
        self.max_iter = mllib.Param(200)
        self.n_samples = mllib.Param(2000)
        self.n_features = mllib.Param(20)
        self.data_seed = mllib.Param(42)
        self.model = None

    def _data(self):
        from sklearn.datasets import make_classification
        from sklearn.model_selection import train_test_split

        X, y = make_classification(
            n_samples=self.n_samples,
            n_features=self.n_features,
            n_informative=8,
            random_state=self.data_seed,
        )
        return train_test_split(X, y, test_size=0.25, random_state=self.data_seed)

    def train(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss
        from sklearn.model_selection import cross_val_score

        X_train, _, y_train, _ = self._data()
        self.model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        for fold, score in enumerate(cross_val_score(self.model, X_train, y_train, cv=5)):
            mllib.log_metric("cv_accuracy", score, step=fold)
        self.model.fit(X_train, y_train)
        mllib.log_metric("train_log_loss", log_loss(y_train, self.model.predict_proba(X_train)))

    def evaluate(self):
        from sklearn.metrics import accuracy_score, f1_score

        _, X_test, _, y_test = self._data()
        predicted = self.model.predict(X_test)
        return {"accuracy": accuracy_score(y_test, predicted), "f1": f1_score(y_test, predicted)}

    def predict(self, request):
        return self.predict_batch([request])[0]

    def predict_batch(self, requests):
        """Several requests with one predict_proba call: sklearn's checks cost far more
        than the arithmetic, so a batch of rows costs about what one row does. The server calls
        it with the requests that arrive together; each gets its own answer."""
        import numpy as np

        arrays = [np.asarray(request["features"], dtype=float) for request in requests]
        rows = np.vstack([a.reshape(1, -1) if a.ndim == 1 else a for a in arrays])
        proba = self.model.predict_proba(rows)  # one pass: the label is the likelier class
        labels = self.model.classes_[proba.argmax(axis=1)]
        probability = proba[:, 1]
        results, start = [], 0
        for a in arrays:
            if a.ndim == 1:
                results.append({"label": labels[start], "probability": probability[start]})
                start += 1
            else:
                end = start + len(a)
                results.append({"label": labels[start:end], "probability": probability[start:end]})
                start = end
        return results
