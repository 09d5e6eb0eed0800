"""Remote GPU agents: hosts reached over SSH that run `--remote` runs with mllib's own supervisor.

An agent is a host you can `ssh` into as an ordinary user. `mllib agents add` installs the agent
program (agents/mllib_agent: mllib's sources in a venv made with the host's python3) over SFTP;
a remote run then sends the run's code as content-addressed blobs the agent lacks, starts mllib's
own supervisor there (detached, so it survives SSH dropping), streams its log, and syncs the
agent's SQLite records and artifacts back into the local registry and store.

Modules, one job each: config (agent list), hostkeys, connection, install, rpc, transfer,
placement, remote (start an attempt, with its datasets), sync, retry, supervise (following one
run: attempts, log, sync), backend (the runs backend of `--remote` runs), api.
"""
