"""The README's Keras compatibility table is true: every name marked supported resolves from
`import minicnn as keras` (or `as tf`), every name marked not yet (or no) raises minicnn's
not-yet error, and every behaviour row names a test file that exists."""

import re

import pytest
from conftest import REPO_ROOT

import minicnn
from minicnn._namespace import NotInMinicnnError

NAME = re.compile(r"^(keras|tf)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def table_rows():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Keras compatibility table")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if not line.startswith("| ") or line.startswith("|---") or line.startswith("| Keras |"):
            continue
        first, status = [cell.strip() for cell in line.strip("|").split("|")[:2]]
        names = [n for n in re.findall(r"`([^`]+)`", first) if NAME.match(n)]
        rows.append((first, names, status))
    return rows


def resolve(name):
    value = minicnn
    for part in name.split(".")[1:]:
        value = getattr(value, part)
    return value


ROWS = table_rows()
NAMES = [(name, status) for _, names, status in ROWS for name in names]


def test_the_table_is_there_and_says_something():
    assert len(ROWS) > 20
    statuses = {status.split()[0].rstrip(":") for _, _, status in ROWS}
    assert statuses <= {"supported", "not", "no"}, statuses
    assert sum(status.startswith("supported") for _, status in NAMES) > 60


@pytest.mark.parametrize("name, status", NAMES, ids=[name for name, _ in NAMES])
def test_each_name_is_as_the_table_says(name, status):
    if status.startswith("supported"):
        assert resolve(name) is not None
    else:
        with pytest.raises(NotInMinicnnError):
            resolve(name)


@pytest.mark.parametrize("row", [row for row in ROWS if not row[1]], ids=lambda row: row[0][:40])
def test_each_behaviour_row_names_the_tests_that_hold_it(row):
    first, _, status = row
    files = re.findall(r"tests/\w+\.py", status)
    assert status.startswith("supported") and files, row
    for path in files:
        assert (REPO_ROOT / path).is_file(), path
