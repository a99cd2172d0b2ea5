import sys

from lensgraph.cli.main import main

sys.exit(main())
