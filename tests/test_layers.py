"""The package's layers point down only, and the search is pure.

Read from the source (every import, at module level or inside a function), not from
what importing loads: a lazy import that runs back up a layer is as much a dependency as
a top-level one, only a hidden one. tests/test_strategy.py checks what importing the
search loads (neither torch nor Ray).
"""

import ast
from pathlib import Path

import pytest

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
    {"data", "synthetic", "dots"},  # datasets as tensors
    {"model_desc"},              # descriptions, ops, models, costs, seed shapes' costs
    {"config_loader"},           # load_config: names checked against the registries
    {"train"},                   # what a job does
    {"engine", "report"},        # the machinery that runs a stage, what a run shows
    {"evaluate", "compare", "runs", "export", "draw"},   # the commands' work
    {"cli", "__main__", ""},     # the entry points and the facade
]
# What the search may not touch: devices, Ray, the file system, the machinery above it,
# nor the back doors to them: imports by name (importlib, runpy, pkgutil), the builtins
# module (its open), the OS's own modules (posix, nt: os without os), the C halves of io
# and pickle, sys (sys.modules holds every module loaded), raw memory, and the modules
# that open files themselves (codecs.open, gzip, logging's FileHandler...).
NOT_IN_SEARCH = {"ray", "torch", "torchvision", "os", "pathlib", "shutil", "tempfile",
                 "glob", "fcntl", "io", "pickle", "shelve", "sqlite3", "subprocess",
                 "socket", "urllib", "petrinas.fileio", "petrinas.engine", "petrinas.report",
                 "importlib", "runpy", "pkgutil", "zipimport", "builtins", "posix", "nt",
                 "_io", "_pickle", "_posixsubprocess", "marshal", "sys", "ctypes", "mmap",
                 "codecs", "fileinput", "linecache", "tokenize", "gzip", "bz2", "lzma",
                 "zipfile", "tarfile", "dbm", "logging"}
# Calls that read or write files through a module search/ may import (numpy's load and
# save, a Path's read_text): any call of these names, as a function or a method.
FILE_CALLS = {"open", "load", "save", "savez", "savez_compressed", "loadtxt",
              "savetxt", "genfromtxt", "fromfile", "tofile", "read_text", "write_text",
              "read_bytes", "write_bytes", "memmap", "open_memmap", "fromregex",
              "DataSource"}
# Names that reach a module or a builtin without an import statement (the dunders also
# as strings: getattr(module, "__builtins__")), or run code given as a string: refused
# wherever they appear, called or not.
DUNDERS = {"__import__", "__builtins__", "__loader__", "__spec__"}
BY_NAME = DUNDERS | {"eval", "exec", "compile", "globals", "breakpoint"}
# A string naming one of these is how getattr(builtins, "open"), import_module("pickle"),
# sys.modules["io"] or np.__dict__["load"] reach them.
NAMED = FILE_CALLS | DUNDERS | {bad for bad in NOT_IN_SEARCH if "." not in bad}


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, module) of every import in the file (a module of the package under
    `root`), relative ones resolved; `from a import b` gives a.b where b is a module of
    the package, else a."""
    known = modules()
    here = module_name(path, root).split(".")
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


def search_violations(path: Path, root: Path = REPO) -> list[str]:
    """What a module of search/ does that reaches a device, Ray or a file, one line each:
    an import of NOT_IN_SEARCH (a plain, a from or a relative one, anywhere in the file),
    a call of a FILE_CALLS name, a BY_NAME name, or a string that is NAMED (docstrings
    aside)."""
    where = path.relative_to(root)
    touched = [f"{where}:{line}: imports {target}" for line, target in imports(path, root)
               if any(target == bad or target.startswith(bad + ".") for bad in NOT_IN_SEARCH)]
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        named = getattr(node, "id", None) or getattr(node, "attr", None)
        if isinstance(node, ast.Call):
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if called in FILE_CALLS:
                touched.append(f"{where}:{node.lineno}: calls {called}()")
        elif isinstance(node, (ast.Name, ast.Attribute)) and named in BY_NAME:
            touched.append(f"{where}:{node.lineno}: uses {named}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and node.value.split(".")[0] in NAMED):
            touched.append(f"{where}:{node.lineno}: names {node.value!r}")
    return touched


def test_the_search_touches_neither_devices_ray_nor_files():
    """Fails if a module of search/ imports I/O, Ray or torch, calls a file function, or
    reaches one by name (each way: test_each_back_door_to_io_is_caught)."""
    touched = []
    for name, path in modules().items():
        if name.startswith("petrinas.search"):
            touched += search_violations(path)
    assert not touched, "\n".join(touched)


# One probe per way into I/O that an import list alone misses, and what the check says.
BACK_DOORS = {
    "dunder_import": ("codec = __import__('io')", "uses __import__"),
    "builtins_getattr": ("import builtins\nreader = getattr(builtins, 'open')",
                         "imports builtins"),
    "getattr_open_by_name": ("from fractions import Fraction\n"
                             "reader = getattr(Fraction, 'open')", "names 'open'"),
    "dunder_builtins": ("reader = __builtins__['open']", "uses __builtins__"),
    "import_module": ("import importlib\nstore = importlib.import_module('pickle')",
                      "imports importlib"),
    "from_importlib": ("from importlib import import_module as im\nstore = im('pickle')",
                       "imports importlib"),
    "import_module_elsewhere": ("def load(mod):\n    return mod.import_module('pickle')",
                                "names 'pickle'"),
    "posix": ("import posix\nfd = posix.open('f', 0)", "imports posix"),
    "os_open": ("import os\nfd = os.open('f', os.O_RDONLY)", "imports os"),
    "os_open_call": ("def write(os):\n    return os.open('f', 1)", "calls open()"),
    "relative_fileio": ("from ..fileio import write_text_atomic", "imports petrinas.fileio"),
    "function_level": ("def later():\n    import pickle\n    return pickle",
                       "imports pickle"),
    "sys_modules": ("import sys\ncodec = sys.modules['io']", "imports sys"),
    "modules_by_name": ("def find(modules):\n    return modules['io']", "names 'io'"),
    "numpy_dict": ("import numpy as np\nread = np.__dict__['load']", "names 'load'"),
    "numpy_load": ("import numpy as np\nx = np.load('x.npy')", "calls load()"),
    "eval": ("reader = eval('op' + 'en')", "uses eval"),
    "exec": ("exec('import io')", "uses exec"),
    "globals": ("reader = globals()['__builtins__']", "uses globals"),
    "ctypes": ("import ctypes\nlibc = ctypes.CDLL(None)", "imports ctypes"),
}


@pytest.mark.parametrize("trick", BACK_DOORS)
def test_each_back_door_to_io_is_caught(trick, tmp_path):
    """A probe module under search/ (written to a temporary copy of the package path)
    per trick: the check names it.

    Fails if search_violations stops seeing that way into I/O."""
    source, expected = BACK_DOORS[trick]
    probe = tmp_path / "petrinas" / "search" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(f'"""A probe: {trick} (open, io)."""\n{source}\n')
    found = search_violations(probe, tmp_path)
    assert any(line.endswith(expected) for line in found), found


def test_docstrings_and_a_stage_named_eval_are_not_back_doors(tmp_path):
    """Fails if the check refuses what search/ rightly holds: the word "open" in a
    docstring, a string that only contains a refused name, a stage named "eval"."""
    probe = tmp_path / "petrinas" / "search" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text('"""open"""\nEVAL = "eval"\n\n\ndef f():\n    """io"""\n'
                     '    return "load_state"\n')
    assert search_violations(probe, tmp_path) == []
