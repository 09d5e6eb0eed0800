"""Scheduled evaluations' fixtures: promtool, as the monitoring tests have it (Debian's
prometheus package, which scripts/test.sh installs)."""

from tests.monitoring.conftest import promtool

__all__ = ["promtool"]
