#!/usr/bin/env python
"""Compare finished runs: python scripts/compare.py RUN [RUN ...] --out DIR."""

import sys

from petrinas.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
