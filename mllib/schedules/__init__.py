"""Scheduled evaluations: `mllib evaluate --model NAME@prod --data eval=NAME --every 1d`.

A schedule is a stored `mllib evaluate` (records); each time it is due, the runner evaluates the
version the name means then (the one deployed in prod) on the newest version of its datasets,
records the run with the deployment it evaluated, and alerts when a `--fail-under` gate breaks
(runner). What runs the due schedules is the system's timer: `mllib schedules install` writes a
systemd timer or a cron line calling `mllib schedules run-due` (install).
"""
