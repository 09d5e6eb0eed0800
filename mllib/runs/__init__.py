"""Runs: preparing, supervising, recording and inspecting executions of model code."""
