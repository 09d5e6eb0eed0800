"""A PyTorch model for mllib: a small MLP regressor on generated data, saved with its own save/load.

Needs torch (`pip install 'mllib[torch]'`, or a torch build of your choice). Try it:
    mllib train model.py --evaluate --epochs=30
"""

import mllib


class MLPRegressor:
    def __init__(self):
        self.learning_rate = mllib.Param(0.01)
        self.epochs = mllib.Param(20)
        self.hidden = mllib.Param(32)
        self.n_samples = mllib.Param(1024)
        self.net = None

    def _build(self):
        import torch

        return torch.nn.Sequential(
            torch.nn.Linear(4, self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, 1)
        )

    def _data(self, seed):
        import torch

        generator = torch.Generator().manual_seed(seed)
        X = torch.rand(self.n_samples, 4, generator=generator) * 2 - 1
        y = (X @ torch.tensor([1.5, -2.0, 0.5, 3.0]) + 0.3 * torch.sin(3 * X[:, 0])).unsqueeze(1)
        return X, y

    def train(self):
        import torch

        torch.use_deterministic_algorithms(True)
        X, y = self._data(seed=1)
        self.net = self._build()
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        for epoch in range(self.epochs):
            for start in range(0, len(X), 64):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(self.net(X[start : start + 64]), y[start : start + 64])
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                mllib.log_metric("loss", torch.nn.functional.mse_loss(self.net(X), y).item(), step=epoch)

    def evaluate(self):
        import torch

        X, y = self._data(seed=2)
        with torch.no_grad():
            return {"mse": torch.nn.functional.mse_loss(self.net(X), y).item()}

    def predict(self, request):
        import torch

        with torch.no_grad():
            x = torch.tensor(request["x"], dtype=torch.float32)
            return {"y": self.net(x.reshape(-1, 4)).squeeze(1).tolist()}

    # Custom persistence: mllib calls these instead of pickling the whole object.
    def save(self, folder):
        import json
        import os

        import torch

        torch.save(self.net.state_dict(), os.path.join(folder, "weights.pt"))
        with open(os.path.join(folder, "params.json"), "w") as handle:
            json.dump({"hidden": self.hidden}, handle)

    @classmethod
    def load(cls, folder):
        import json
        import os

        import torch

        model = mllib.create(cls)
        with open(os.path.join(folder, "params.json")) as handle:
            model.hidden = json.load(handle)["hidden"]
        model.net = model._build()
        model.net.load_state_dict(torch.load(os.path.join(folder, "weights.pt"), weights_only=True))
        model.net.eval()
        return model
