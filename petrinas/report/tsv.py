"""Tab-separated tables of rows (pool.tsv, frontier.tsv, hypervolume.tsv): how a value
is written, a whole table written atomically, lines appended, and the ids' natural
order."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from petrinas.fileio import write_text_atomic
from petrinas.search.rows import COLUMNS


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    # Tabs and newlines would break the row structure of a TSV.
    return re.sub(r"[\t\r\n]", " ", str(value))


def tsv_line(row: dict, columns: Sequence[str] = COLUMNS) -> str:
    """One row as a line (no newline); missing or None values are empty."""
    return "\t".join(_cell(row.get(c)) for c in columns)


def _lines(rows: Iterable[dict], columns: Sequence[str]) -> list[str]:
    return [tsv_line(row, columns) for row in rows]


def write_tsv(path: str | Path, rows: Iterable[dict], columns: Sequence[str] = COLUMNS
              ) -> None:
    """Rows as a tab-separated table with a header; missing or None values are empty."""
    write_text_atomic(path, "\n".join(["\t".join(columns), *_lines(rows, columns)]) + "\n")


def append_tsv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] = COLUMNS
               ) -> None:
    """Append whole lines with one write (a reader sees a line whole or not at all); the
    header first if the file is new."""
    path = Path(path)
    text = "\n".join(_lines(rows, columns)) + "\n"
    if not path.exists():
        text = "\t".join(columns) + "\n" + text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def natural_key(trial_id: str) -> tuple:
    """Natural order of ids, so t10000 sorts after t9999."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", trial_id))
