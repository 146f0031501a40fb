"""README's environment table, packet/variables.py and what the code reads agree."""

import re
from pathlib import Path

from packet.variables import README_END, README_START, markdown, names

ROOT = Path(__file__).resolve().parents[2]
# Where variables are read: the settings, gunicorn's own file, the gunicorn worker.
READERS = ("packet/config.py", "gunicorn.conf.py")
READ = re.compile(
    r"""(?:env|environ)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']|_(?:float|int|bool|choice|dollars|config)\(\s*\w+,\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(README_START), readme.index(README_END) + len(README_END)
    assert readme[start:end] + "\n" == markdown(), "run: python -m packet.variables"


def test_every_variable_read_is_in_the_table():
    read = set()
    for path in READERS:
        for match in READ.finditer((ROOT / path).read_text()):
            read.add(match.group(1) or match.group(2))
    assert len(read) > 40  # the pattern still finds them
    assert read - set(names()) == set()


def test_every_variable_in_the_table_is_read():
    sources = "".join((ROOT / path).read_text() for path in READERS)
    unread = [n for n in names() if f"'{n}'" not in sources and f'"{n}"' not in sources]
    assert unread == []
