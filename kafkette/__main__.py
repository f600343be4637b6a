import sys

from kafkette.cli import main

sys.exit(main())
