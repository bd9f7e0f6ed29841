"""The README and docs/*.md say what the code does: every command they show runs as
written (its script or command exists, with the options, configs and config keys it
uses), every repository file they name exists, every link and image resolves inside the
repository, and no page names a file outside it.

Commands are read from ```bash blocks (every line), from other blocks' `$ ` lines, and
from inline code that starts with a command word (`python ...`, `petrinas ...`). A
command is checked without running it: its `--help` (taken in this process, so the
imports are paid once) must list every option it uses.
"""

import contextlib
import dataclasses
import io
import re
import runpy
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from support import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_WORDS = ("python", "petrinas", "pytest", "pip", "ray", "tensorboard")
# Commands the pages may show that are not ours and take no checking here.
OTHER_COMMANDS = {"apt-get", "rm", "export", "kill", "nvidia-smi"}
# A path in the repository: its first folder is one of these (or a petrinas package).
REPO_DIRS = ("petrinas", "scripts", "tests", "benchmarks", "confs", "docs", ".ci",
             "model_desc", "search", "engine", "report", "train", "strategies")
REPO_FILES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
OUTSIDE = re.compile(r"/work/|(?<![\w.-])shared/|/home/|/root/|file://")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _text(page: Path) -> str:
    return page.read_text()


def _prose(text: str) -> str:
    """`text` without its fenced blocks."""
    return BLOCK.sub("", text)


# ------------------------------------------------------------------------ commands

def commands(page: Path) -> list[str]:
    """Every shell command the page shows, one per string, comments removed."""
    text = _text(page)
    found = []
    for lang, body in BLOCK.findall(text):
        lines = body.splitlines()
        for line, after in zip(lines, [*lines[1:], ""]):
            if lang in ("bash", "sh"):
                found.append(line)
            elif line.startswith("$ ") and not after.startswith("error:"):
                found.append(line[2:])  # (an error example is checked below)
    for span in INLINE.findall(_prose(text)):
        span = " ".join(span.split())
        if (_words(span) or [""])[0] in COMMAND_WORDS:   # VAR=value command too
            found.append(span)
    out = []
    for line in found:
        line = line.split(" #", 1)[0].strip()
        line = re.sub(r"(?<=\s)\[|\](?=\s|$)", "", line)  # usage notation: [--opt VALUE]
        line = re.sub(r"\$\(([^)]*)\)", lambda m: out.append(m.group(1)) or "X", line)
        out.extend(part.strip() for part in re.split(r"&&|;", line) if part.strip())
    return out


def _words(command: str) -> list[str]:
    words = [w for w in shlex.split(command) if w != "..."]  # "..." stands for more
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value command
        words = words[1:]
    return words


@lru_cache(maxsize=None)
def help_options(kind: str, target: str) -> frozenset[str]:
    """The options a script's or a `petrinas` command's --help lists."""
    out = io.StringIO()
    argv = sys.argv
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            if kind == "script":
                sys.argv = [target, "--help"]
                runpy.run_path(str(REPO / target), run_name="__main__")
            else:
                from petrinas.cli import main
                main([*target.split(), "--help"])
    finally:
        sys.argv = argv
    assert exit_.value.code in (0, None), (target, out.getvalue())
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", out.getvalue()))


@lru_cache(maxsize=None)
def ray_options(sub: str) -> frozenset[str]:
    from ray.scripts.scripts import cli
    assert sub in cli.commands, f"ray has no command {sub!r}"
    return frozenset(o for p in cli.commands[sub].params for o in p.opts)


@lru_cache(maxsize=None)
def pytest_options() -> dict[str, bool]:
    """pytest's options, its plugins' included (`pytest --help`), each with whether it
    takes a value (`-k EXPRESSION`, `--dist=distmode`)."""
    shown = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True,
                           text=True, cwd=REPO, timeout=120).stdout
    found = {}
    for line in shown.splitlines():
        if line.startswith("  -"):
            for alias in line.strip().split("  ")[0].split(", "):
                option = re.fullmatch(r"(-{1,2}[\w-]+)(?:[ =](\S+))?", alias)
                if option:
                    found[option.group(1)] = option.group(2) is not None
    return found


@lru_cache(maxsize=None)
def config_keys() -> frozenset[str]:
    from petrinas.config import schema_fields
    return frozenset(key for key, _, _ in schema_fields())


def petrinas_commands() -> frozenset[str]:
    from petrinas.cli import COMMANDS
    return frozenset(COMMANDS)


def _check_values(command: str, words: list[str]) -> None:
    """The configs, `--set` keys and benchmark variants a command names exist."""
    for i, word in enumerate(words):
        value = words[i + 1] if i + 1 < len(words) else ""
        if word == "--conf" and not value.endswith(".yaml"):
            assert (REPO / "confs" / f"{value}.yaml").is_file(), f"{command}: no config {value}"
        if word == "--set":
            for item in words[i + 1:]:
                if item.startswith("--"):
                    break
                assert item.split("=", 1)[0] in config_keys(), f"{command}: no key {item}"
        if word == "--variant":
            for item in value.split(":", 1)[1].split(","):
                assert item.split("=", 1)[0] in config_keys(), f"{command}: no key {item}"


def check_command(command: str) -> None:
    words = _words(command)
    if not words:
        return
    if words[:3] == ["python", "-m", "petrinas"]:
        words = ["petrinas", *words[3:]]
    if words[:3] == ["python", "-m", "pytest"]:
        words = ["pytest", *words[3:]]
    options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    head = words[0]
    if head == "python":
        script = words[1]
        assert (REPO / script).is_file(), f"{command}: no file {script}"
        assert options <= help_options("script", script), \
            f"{command}: {sorted(options - help_options('script', script))} not in --help"
    elif head == "petrinas":
        sub = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
        if sub:
            assert sub in petrinas_commands(), f"{command}: petrinas has no command {sub}"
            assert options <= help_options("petrinas", sub), command
        else:
            assert options <= {"--help"}, command
    elif head == "pytest":
        known = pytest_options()
        rest = iter(words[1:])
        for word in rest:
            if word.startswith("-"):
                name = word.split("=", 1)[0]
                assert name in known, f"{command}: pytest has no option {name}"
                if known[name] and "=" not in word:
                    next(rest, None)   # the option's value
            else:
                assert (REPO / word.split("::")[0]).exists(), f"{command}: no {word}"
    elif head == "pip":
        for word in words:
            extras = re.fullmatch(r"\.\[([\w,]+)\]", word)
            if extras:
                setup = (REPO / "setup.cfg").read_text()
                for extra in extras.group(1).split(","):
                    assert re.search(rf"^{extra} =", setup, re.M), f"{command}: no [{extra}]"
    elif head == "ray":
        assert options <= ray_options(words[1]), \
            f"{command}: {sorted(options - ray_options(words[1]))}"
    elif head == "tensorboard":
        assert options <= {"--logdir"}, command
    else:
        assert head in OTHER_COMMANDS, f"{command}: an unknown command ({head}) in the docs"
    _check_values(command, words)


ALL_COMMANDS = sorted({c for page in PAGES for c in commands(page)})


def test_the_pages_show_the_commands_a_user_needs():
    """Fails if the extraction stops finding commands (a changed fence, say), which would
    leave every command below unchecked."""
    assert {"python scripts/search.py", "pytest"} <= set(commands(REPO / "README.md"))
    assert len(ALL_COMMANDS) > 30


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_command_in_the_docs_runs_as_written(command):
    """Fails if a command names a script, a petrinas command, an option, a config, a
    `--set` key, a test path or an install extra that does not exist."""
    check_command(command)


def test_the_check_catches_a_wrong_option_key_and_config():
    """Fails if the checks above accept what would not run."""
    for bad in ("python scripts/search.py --no-such-option",
                "python scripts/search.py --set search.max_trails=5",
                "python scripts/search.py --conf no_such_conf",
                "python scripts/no_such.py", "petrinas no_such_command",
                "pip install -e .[no_such_extra]", "ray start --no-such-flag",
                "pytest --no-such-flag", "pytest -k x tests/no_such_test.py"):
        with pytest.raises(AssertionError):
            check_command(bad)


def error_examples() -> list[tuple[str, str]]:
    """(command, the error line shown after it) of every error example in the pages."""
    found = []
    for page in PAGES:
        for _, body in BLOCK.findall(_text(page)):
            lines = body.splitlines()
            found += [(line[2:], after) for line, after in zip(lines, lines[1:])
                      if line.startswith("$ ") and after.startswith("error:")]
    return found


def test_the_error_examples_print_what_the_docs_show(capsys, tmp_path, monkeypatch):
    """Fails if a documented bad command no longer exits 2 with the line shown (a changed
    message, or a "did you mean" that went away). Only bad-input examples of the search
    command are shown, which stop before anything is written or Ray starts."""
    from petrinas.cli import search_main

    examples = error_examples()
    assert examples
    monkeypatch.chdir(tmp_path)
    for command, shown in examples:
        words = _words(command)
        assert words[:2] == ["python", "scripts/search.py"], command
        assert search_main(words[2:]) == 2, command
        assert capsys.readouterr().err.strip() == shown, command
    assert list(tmp_path.iterdir()) == []


def test_python_blocks_compile():
    """Fails if a Python example in the docs is not even valid Python."""
    for page in PAGES:
        for lang, body in BLOCK.findall(_text(page)):
            if lang == "python":
                compile(body, str(page), "exec")


# -------------------------------------------------------------------------- files

@lru_cache(maxsize=None)
def repo_files() -> tuple[str, ...]:
    skip = {".git", "runs", ".venv", "__pycache__", ".pytest_cache", ".gpu"}
    out = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if path.is_file() and not skip & set(parts):
            out.append("/".join(parts))
    return tuple(out)


def named_files(page: Path) -> list[tuple[str, str]]:
    """(path, test name or '') of every repository file the page names in inline code.
    A name that starts with `::` is a test of the file named last before it."""
    found, last = [], ""
    for span in INLINE.findall(_prose(_text(page))):
        span = span.strip()
        if span.startswith("::") and last:
            found.append((last, span[2:]))
            continue
        path, _, test = span.partition("::")
        first = path.split("/", 1)[0]
        if " " in path or "<" in path or "*" in path or "{" in path:
            continue
        if (first in REPO_DIRS and "/" in path) or path in REPO_FILES:
            found.append((path.rstrip("/"), test))
            last = path
    return found


def _exists(path: str) -> bool:
    return any(f == path or f.startswith(path + "/") or f.endswith("/" + path)
               or ("/" + f).endswith("/" + path) for f in repo_files())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_and_test_named_exists(page):
    """Fails if a page names a file of the repository (or a test in it) that is not
    there, e.g. after a rename."""
    for path, test in named_files(page):
        assert _exists(path), f"{page.name}: {path} is not in the repository"
        if test:
            file = next(f for f in repo_files() if f == path or f.endswith("/" + path))
            name = re.sub(r"\[.*\]$", "", test)
            assert re.search(rf"^(async )?def {name}\(", (REPO / file).read_text(), re.M), \
                f"{page.name}: {path} has no test {name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_names_a_file_outside_the_repository(page):
    """Fails if a page cites a file a clone does not have (a shared folder, an absolute
    path on the machine the docs were written on)."""
    text = _text(page)
    assert not OUTSIDE.findall(text), (page.name, OUTSIDE.findall(text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(_text(page)), re.M):
        base = slug(heading)
        out.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_image_resolves_in_the_repository(page):
    """Fails if a relative link or image points at a missing file, leaves the
    repository, or names an anchor its page does not have."""
    for target in LINK.findall(_prose(_text(page))):
        if re.match(r"https?://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: {target}: no such heading"


def test_slugs_and_outside_names_as_github_and_the_rule_mean_them():
    """Fails if the anchor or the outside-file checks stop recognising what they check."""
    assert slug("Trainer overhead, and torch.compile on CPU") == \
        "trainer-overhead-and-torchcompile-on-cpu"
    assert slug("Cost: MACs, not tensorwatch's `MAdd`") == "cost-macs-not-tensorwatchs-madd"
    assert OUTSIDE.search("see shared/gpu/README.md") and OUTSIDE.search("/work/main/x")
    assert not OUTSIDE.search("a machine shared with other jobs")


# -------------------------------------------------------------- what pages promise

def test_the_configuration_reference_names_every_key():
    """Fails if a config key is added without a row in docs/configuration.md."""
    from petrinas.config import schema_fields

    rows = [line for line in _text(REPO / "docs" / "configuration.md").splitlines()
            if line.startswith("| `")]
    covered = set()
    for row in rows:
        first, meaning = row.split(" | ", 1)
        for key in re.findall(r"`([\w.{},*]+)`", first):
            for name in _expand(key):
                if name.endswith(".*"):
                    leaves = re.findall(r"`(\w+)`", meaning)
                    covered |= {f"{name[:-2]}.{leaf}" for leaf in leaves}
                else:
                    covered.add(name)
    missing = [key for key, _, hint in schema_fields()
               if not dataclasses.is_dataclass(hint) and key not in covered]
    assert missing == []


def _expand(key: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", key)
    if not match:
        return [key]
    return [name for option in match.group(1).split(",")
            for name in _expand(key[:match.start()] + option + key[match.end():])]


def test_the_extending_page_names_the_whole_strategy_interface():
    """Fails if a method is added to the Strategy interface and docs/extending.md does
    not name it."""
    from petrinas.search.strategy import Strategy

    text = _text(REPO / "docs" / "extending.md")
    missing = [name for name in sorted(Strategy.__abstractmethods__)
               if f"`{name}`" not in text]
    assert missing == []


def headline_figures() -> list[str]:
    """Every 'value [low, high]' of the README's headline results section."""
    readme = _text(REPO / "README.md")
    section = readme.split("\n## Does the search work?", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"[−+]\d+\.\d+ \[[−+]\d+\.\d+, [−+]\d+\.\d+\]", section)


def test_the_headline_figures_are_those_of_the_search_quality_page():
    """Fails if the README's headline table and docs/search-quality.md state one
    comparison differently (one of them updated, not the other)."""
    figures = headline_figures()
    assert len(figures) >= 4
    page = _text(REPO / "docs" / "search-quality.md")
    assert [f for f in figures if f not in page] == []
