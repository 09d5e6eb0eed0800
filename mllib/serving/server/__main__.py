"""`python -m mllib.serving.server SPEC.json`: the process a deployment's server runs as."""

import sys

from mllib.serving.server.main import main

sys.exit(main())
