"""The Ray runtime: the worker entrypoint as a job on an existing Ray cluster (its Jobs API).

A run becomes one Ray job whose entrypoint is mllib's one worker command
(mllib.protocol.argv), started in the project folder, with `entrypoint_num_gpus` from
`[ray] num_gpus`; Ray schedules it on a node with those GPUs free. mllib keeps everything else:
the registry (the source of truth: a head restarted without fault tolerance forgets its jobs),
the queue, the retry policy. The run folder and the project are read and written at the same
paths on the cluster's nodes: a head on this machine, or nodes that mount them (NFS) where
they are here. Shipping them to nodes without a shared filesystem is not built yet (README).

    settings.py  the `[ray]` table: address, auth, the workers' Python, GPUs per run
    client.py    a JobSubmissionClient with the cluster's token; what `mllib ray check` reports
    job.py       RayRuntime and RayJob: submit, stream the log, wait, cancel, reap

Ray is an optional extra (`pip install 'mllib[ray]'`) imported only inside these functions.
"""

from __future__ import annotations

from mllib.runtime.ray.job import RayRuntime

__all__ = ["RayRuntime"]
