import sys

from mllib_agent.server import main

sys.exit(main())
