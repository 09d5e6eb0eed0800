"""The Ray runtime: the worker entrypoint as a job on an existing Ray cluster (its Jobs API).

A run becomes one Ray job whose entrypoint is mllib's one worker command
(mllib.protocol.argv), started in the project folder, with `entrypoint_num_gpus` from
`[ray] num_gpus`; Ray schedules it on a node with those GPUs free. mllib keeps everything else:
the registry (the source of truth: a head restarted without fault tolerance forgets its jobs),
the queue, the retry policy. A run's code, inputs and datasets reach the node in the job's
runtime_env and its events and outputs come back in the job's log (`[ray] files = "ship"`,
the default for a head that is not on this machine); or the nodes read and write the run
folder and the project at the same paths (`"shared"`: a head here, nodes that mount them).

    settings.py  the `[ray]` table: address, auth, the workers' Python, GPUs per run, files
    client.py    a JobSubmissionClient with the cluster's token; what `mllib ray check` reports
    job.py       RayRuntime and RayJob: submit, stream the log, wait, cancel, reap
    shipping.py  the run's files into the job's working_dir and py_modules, its outputs back
    channel.py   the records a shipped job's log carries besides the worker's output
    node.py      the node's side of a shipped job: runs the worker, sends events and outputs

Ray is an optional extra (`pip install 'mllib[ray]'`) imported only inside these functions.
"""

from __future__ import annotations

from mllib.runtime.ray.job import RayRuntime

__all__ = ["RayRuntime"]
