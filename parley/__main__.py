import sys

from parley.app.cli import main

sys.exit(main())
