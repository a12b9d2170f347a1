"""Reading and writing submission files, plain or gzip, and collecting their problems."""

import gzip
from dataclasses import dataclass, field
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Report:
    """Problems found in one file: (line number or None for the whole file, message)."""

    path: Path
    problems: list = field(default_factory=list)
    rows: int = 0
    kind: str = ""

    def add(self, line, message):
        self.problems.append((line, message))

    @property
    def ok(self):
        return not self.problems

    def format(self, limit=50):
        """The problems as `path:line: message` lines, at most `limit` of them."""
        lines = [f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
                 for line, message in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"{self.path}: ... and {len(self.problems) - limit} more problems")
        return "\n".join(lines)


def open_text(path, mode, gz):
    """Open a text file for reading or writing, through gzip when `gz`."""
    if gz:
        return gzip.open(path, mode + "t", encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def data_rows(path, report, header, what):
    """Yield (line number, key, rest) of each data row after checking the header.

    Rows are `key,rest`; a row without a comma is reported (naming `what` follows the key) and
    skipped. Counts the rows in `report.rows`.
    """
    for number, line in read_lines(path, report):
        if number == 1:
            if line != header:
                report.add(1, f"header is {line[:60]!r}, expected {header!r}")
            continue
        report.rows += 1
        key, comma, rest = line.partition(",")
        if not comma:
            report.add(number, f"no comma between the {what}")
            continue
        yield number, key, rest


def read_lines(path, report):
    """Yield (line number, text without line ending), one line at a time.

    A missing, empty or undecodable file is reported instead (an undecodable one after the
    lines before the bad bytes), so memory does not grow with the file.
    """
    path = Path(path)
    if not path.is_file():
        report.add(None, "no such file")
        return
    number = 0
    try:
        with open_text(path, "r", gz=is_gzip(path)) as f:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
    except (UnicodeDecodeError, OSError, EOFError) as e:
        report.add(None, f"cannot be read as UTF-8 text ({e})")
        return
    if number == 0:
        report.add(None, "the file is empty")
