"""A LitServe API written as LitServe's documentation writes one (setup loads the model, decode and
encode transform, batch/unbatch with max_batch_size > 1, the server built under __main__), for
tests that serve it through mllib unchanged. It writes what it saw (setup's device, each batch's
size) as JSON lines to $LITAPI_RECORD, so a test can tell how mllib called it; a request with
"hold" waits until that file exists, so a test can queue requests behind it."""

import json
import os
import time
from pathlib import Path

import litserve as ls
from fastapi import HTTPException


def record(**event):
    path = os.environ.get("LITAPI_RECORD")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({**event, "pid": os.getpid()}) + "\n")


class ScaleAPI(ls.LitAPI):
    def setup(self, device):
        # Loads its weights from a file of the project, as an API loads a checkpoint.
        self.weights = json.loads((Path(__file__).parent / "weights.json").read_text())
        self.model = lambda xs: [self.weights["scale"] * x + self.weights["bias"] for x in xs]
        record(event="setup", device=device)

    def decode_request(self, request):
        if not isinstance(request.get("input"), (int, float)):
            raise HTTPException(status_code=422, detail="input must be a number")
        return {"x": float(request["input"]), "hold": request.get("hold")}

    def batch(self, inputs):
        return inputs

    def predict(self, batch):
        record(event="predict", size=len(batch))
        for item in batch:
            while item["hold"] and not Path(item["hold"]).exists():
                time.sleep(0.01)
        return self.model([item["x"] for item in batch])

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"output": output}


if __name__ == "__main__":
    api = ScaleAPI(max_batch_size=4, batch_timeout=0.05)
    server = ls.LitServer(api, accelerator="auto")
    server.run(port=8000)
