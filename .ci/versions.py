"""The versions this environment tests with, and whether README.md says the same.

    python .ci/versions.py               print them (one line, as the README has it)
    python .ci/versions.py --check FILE  also compare with FILE's tested-versions line
    python .ci/versions.py --write FILE  replace FILE's tested-versions line with them

CI runs it in the fresh virtual environment it tests in, so the line it prints is what
the suite just passed with. A difference is printed as a warning, not an error: a new
release inside the bounds is what a fresh install gets, and the suite decides whether it
works; the README line is then out of date, not wrong about the code.
"""
import argparse
import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

# The packages a reader of the README cares about, then the extras' dependencies.
PACKAGES = ["torch", "torchvision", "ray", "numpy", "matplotlib", "scikit-learn",
            "PyYAML", "Pillow", "overrides", "tensorboard", "pytest", "pytest-xdist",
            "hypothesis", "tensorwatch", "tornado", "pandas"]
MARK = "Tested with:"  # the README line starts with it
LINE = re.compile(rf"^{re.escape(MARK)} .*$", re.M)


def tested_line() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"{MARK} Python {platform.python_version()}, " + ", ".join(found) + "."


def differences(old: str, new: str) -> list[str]:
    def parse(line: str) -> dict[str, str]:
        items = line.removeprefix(MARK).strip().rstrip(".").split(", ")
        return dict(item.split(" ", 1) for item in items if " " in item)
    before, now = parse(old), parse(new)
    return [f"{name} {before.get(name, '-')} in the README, {version} here"
            for name, version in now.items() if before.get(name) != version]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", type=Path, metavar="FILE")
    group.add_argument("--write", type=Path, metavar="FILE")
    args = parser.parse_args()
    line = tested_line()
    print(line)
    path = args.check or args.write
    if path is None:
        return 0
    text = path.read_text()
    match = LINE.search(text)
    if match is None:
        print(f"versions: {path} has no line starting {MARK!r}", file=sys.stderr)
        return 2
    if args.write:
        path.write_text(text[:match.start()] + line + text[match.end():])
        return 0
    diff = differences(match.group(0), line)
    print(f"versions: {path} is up to date" if not diff else
          f"versions: WARNING: {path}'s tested versions differ: " + "; ".join(diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
