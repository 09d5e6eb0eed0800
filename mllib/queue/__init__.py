"""The team server's queue: jobs enqueued with their run in one transaction, claimed by fair
share and placed on agents with enough free GPUs, held by leases (mllib.queue.jobs,
mllib.queue.scheduler, mllib.queue.views)."""
