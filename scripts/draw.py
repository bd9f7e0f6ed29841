#!/usr/bin/env python
"""Draw a model's cells for a paper figure: python scripts/draw.py DIR [--out STEM]."""

import sys

from petrinas.cli import draw_main

if __name__ == "__main__":
    sys.exit(draw_main())
