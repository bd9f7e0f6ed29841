"""python -m petrinas COMMAND ...: the same as the `petrinas` console command."""

import sys

from petrinas.cli import main

sys.exit(main())
