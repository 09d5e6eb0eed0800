"""A model whose steps need different packages: PyYAML only inside train(), and a
packaging.version.Version kept on self, so the trained model's pickle names packaging although
evaluate() and predict() import nothing."""

import mllib


class Steps:
    def __init__(self):
        self.release = mllib.Param("1.2.3")

    def train(self):
        import yaml
        from packaging.version import Version

        self.version = Version(yaml.safe_load(f"v: '{self.release}'")["v"])
        mllib.log_metric("major", self.version.major)

    def evaluate(self):
        return {"minor": self.version.minor}

    def predict(self, request):
        return str(self.version)
