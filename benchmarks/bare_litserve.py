"""The baseline for benchmarks/serving.py: a bare LitServe server (LitServe's defaults) serving the
same trained model's predict. Only loading the model uses mllib; the request path is LitServe's own.

python benchmarks/bare_litserve.py BUNDLE_DIR MODEL_FILE MODEL_CLASS PORT WORKERS
"""

from __future__ import annotations

import sys
from pathlib import Path

import litserve as ls
from fastapi import Response

from mllib.encoding import to_json_bytes
from mllib.serving.server.modelapi import load_predictor


class BareAPI(ls.LitAPI):
    def __init__(self, bundle: str, model_file: str, model_class: str) -> None:
        super().__init__()
        self.model = (Path(bundle), model_file, model_class)

    def setup(self, device):
        self.model_predict = load_predictor(*self.model)

    def predict(self, request):
        return self.model_predict(request)

    def encode_response(self, output):
        # predict() returns numpy values, which FastAPI's encoder cannot take.
        return Response(content=to_json_bytes(output), media_type="application/json")


if __name__ == "__main__":
    bundle, model_file, model_class, port, workers = sys.argv[1:6]
    api = BareAPI(bundle, model_file, model_class)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=int(workers))
    server.run(port=int(port), generate_client_file=False, log_level="warning")
