import sys

from infpop.images.cli import main

sys.exit(main())
