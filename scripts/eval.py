#!/usr/bin/env python
"""Train the gallery of a finished search fully: python scripts/eval.py --run DIR."""

import sys

from petrinas.cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
