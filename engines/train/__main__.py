import sys

from engines.train.cli import main

sys.exit(main())
