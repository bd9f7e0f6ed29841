#!/usr/bin/env python
"""Export a model folder to a .pt2 that loads with torch alone:
python scripts/export.py DIR [--out PATH]."""

import sys

from petrinas.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
