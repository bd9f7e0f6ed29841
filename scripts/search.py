#!/usr/bin/env python
"""Run or resume a Petridish search: python scripts/search.py [--conf NAME] [--out DIR]."""

import sys

from petrinas.cli import search_main

if __name__ == "__main__":
    sys.exit(search_main())
