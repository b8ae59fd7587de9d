import sys

from scaletune.cli import main

sys.exit(main())
