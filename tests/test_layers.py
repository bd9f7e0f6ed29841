"""The package's layers point down only, and the search is pure.

Read from the source (every import, at module level or inside a function), not from
what importing loads: a lazy import that runs back up a layer is as much a dependency as
a top-level one, only a hidden one. tests/test_strategy.py checks what importing the
search loads (neither torch nor Ray).
"""

import ast
from pathlib import Path

from support import REPO

PACKAGE = REPO / "petrinas"

# Bottom to top. A module's layer is that of its first name under petrinas ("" is the
# package itself: petrinas/__init__.py, the public facade). Each may import from its own
# layer and those below.
LAYERS = [
    {"errors", "fileio"},        # leaves: error types, durable writes
    {"config"},                  # the schema, reading, validation
    {"search"},                  # the pure algorithm: hull, pool, strategies, stopping
    {"tables"},                  # table text: names a row as its kind declares
    {"data", "synthetic"},       # datasets as tensors
    {"model_desc"},              # descriptions, ops, models, costs, seed shapes' costs
    {"config_loader"},           # load_config: names checked against the registries
    {"train"},                   # what a job does
    {"engine", "report"},        # the machinery that runs a stage, what a run shows
    {"evaluate", "compare", "runs", "export", "draw"},   # the commands' work
    {"cli", "__main__", ""},     # the entry points and the facade
]
# What the search may not touch: devices, Ray, the file system, the machinery above it.
NOT_IN_SEARCH = {"ray", "torch", "torchvision", "os", "pathlib", "shutil", "tempfile",
                 "glob", "fcntl", "io", "pickle", "shelve", "sqlite3", "subprocess",
                 "socket", "urllib", "petrinas.fileio", "petrinas.engine", "petrinas.report"}
# Calls that read or write files through a module search/ may import (numpy's load and
# save, a Path's read_text): any call of these names, as a function or a method.
FILE_CALLS = {"open", "load", "save", "savez", "savez_compressed", "loadtxt",
              "savetxt", "genfromtxt", "fromfile", "tofile", "read_text", "write_text",
              "read_bytes", "write_bytes", "memmap"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, relative ones resolved; `from a
    import b` gives a.b where b is a module of the package, else a."""
    known = modules()
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + [base]).strip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
    return found


def layer(module: str) -> int:
    """The index in LAYERS of a petrinas module (KeyError: in no layer)."""
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise KeyError(module)


def test_every_module_is_in_a_layer():
    unplaced = []
    for name in modules():
        try:
            layer(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"put these in a layer of LAYERS: {unplaced}"


def test_the_walk_sees_imports_inside_functions():
    """The facade imports its modules only when a function is called."""
    found = {name for _, name in imports(PACKAGE / "__init__.py")}
    assert {"petrinas.config_loader", "petrinas.model_desc.model", "petrinas.runs"} <= found


def test_imports_point_down_only():
    upward = []
    for name, path in modules().items():
        for line, target in imports(path):
            if (target == "petrinas" or target.startswith("petrinas.")) \
                    and layer(target) > layer(name):
                upward.append(f"{path.relative_to(REPO)}:{line}: {name} (layer "
                              f"{layer(name)}) imports {target} (layer {layer(target)})")
    assert not upward, "\n".join(upward)


def test_the_search_touches_neither_devices_ray_nor_files():
    touched = []
    for name, path in modules().items():
        if not name.startswith("petrinas.search"):
            continue
        for line, target in imports(path):
            if any(target == bad or target.startswith(bad + ".") for bad in NOT_IN_SEARCH):
                touched.append(f"{path.relative_to(REPO)}:{line}: imports {target}")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if called in FILE_CALLS:
                touched.append(f"{path.relative_to(REPO)}:{node.lineno}: calls {called}()")
    assert not touched, "\n".join(touched)
