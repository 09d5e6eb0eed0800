"""A model with secret params (explicit, by env name, by param name) and ones that only look alike."""

import hashlib

import mllib


class WithSecrets:
    def __init__(self):
        self.hf_token = mllib.Param("", env="HF_TOKEN")  # secret: its name (and its env)
        self.db = mllib.Param("", env="DB_PASSWORD")  # secret: its env variable's name
        self.api_key = mllib.Param("")  # secret: its name
        self.flavour = mllib.Param("default-flavour", secret=True)  # marked explicitly
        self.pad_token = mllib.Param("[PAD]")  # a tokenizer setting, not a credential
        self.note = mllib.Param("n", env="NOTE_TOKEN", secret=False)  # opted out
        self.epochs = mllib.Param(2)

    def _digest(self) -> str:
        joined = "|".join([self.hf_token, self.db, self.api_key, self.flavour])
        return hashlib.sha256(joined.encode()).hexdigest()

    def train(self):
        print("train digest", self._digest())
        mllib.log_metric("loss", 1.0 / self.epochs)

    def evaluate(self):
        print("evaluate digest", self._digest())
        return {"accuracy": 0.5}

    def predict(self, request):
        return request
