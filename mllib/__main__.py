import sys

from mllib.cli import main

sys.exit(main())
