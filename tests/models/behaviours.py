"""A model whose train() does what the `behaviour` param says: used to test failures and cancelling."""

import json
import os
import signal
import subprocess
import sys
import time

import mllib


class Behaviour:
    def __init__(self):
        self.behaviour = mllib.Param("ok")
        self.points = mllib.Param(10)
        self.marker = mllib.Param("started.json")

    def train(self):
        if self.behaviour == "sigkill":
            print("about to be killed", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.behaviour == "memory":
            raise MemoryError("could not allocate the batch")
        if self.behaviour == "exit":
            sys.exit(3)
        if self.behaviour == "sleep":
            # A child in our process group and a grandchild that escaped it with setsid.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            escaped = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
            )
            with open(self.marker + ".tmp", "w") as handle:
                json.dump(
                    {"worker": os.getpid(), "child": child.pid, "escaped": escaped.pid}, handle
                )
            os.replace(self.marker + ".tmp", self.marker)
            for second in range(600):
                print(f"tick {second}", flush=True)
                time.sleep(1)
        for i in range(self.points):
            mllib.log_metric("value", float(i))
        print(f"logged {self.points} points", flush=True)

    def evaluate(self):
        return {"points": self.points}

    def predict(self, request):
        return request
