"""The numeric environment: the variables that pick BLAS kernels and thread counts.

A process run inherits them from the shell; a container sees nothing of the host's environment. A
forced kernel (OPENBLAS_CORETYPE) or a thread count changes the last bits of a fitted model, so
every runtime passes these the same way (the run's Job carries them: mllib.runs.job), and the
worker records the ones in effect with the run's environment (mllib.worker.environment).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Prefixes of the variables OpenBLAS, OpenMP, MKL, BLIS, Apple's Accelerate, numexpr and the
# Intel OpenMP runtime read.
PREFIXES = ("OPENBLAS_", "GOTO_", "OMP_", "KMP_", "MKL_", "BLIS_", "VECLIB_", "NUMEXPR_")


def numeric_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The numeric variables set in `environ` (default: this process's environment)."""
    environ = os.environ if environ is None else environ
    return {name: value for name, value in environ.items() if name.startswith(PREFIXES)}
