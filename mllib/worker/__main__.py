import sys

from mllib.worker.main import main

sys.exit(main())
