"""SQL files: each room keeps its statements in a ``sql/`` folder beside its code, named by verb and
target (``extract_delta.sql``, ``upsert_dimension.sql``), and reads them through :class:`SqlFolder`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class SqlFolder:
    """The ``sql/`` folder of one package, e.g. ``SqlFolder("tasks.load")``."""

    package: str

    def read(self, name: str) -> str:
        """The text of ``<package>/sql/<name>.sql``, without its final ``;``.

        ADBC runs a parameterless SELECT as ``COPY (query) TO STDOUT``, where a ``;`` is a syntax
        error.
        """
        text = resources.files(self.package).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
        return text.strip().removesuffix(";")

    def statements(self, name: str) -> list[str]:
        """The statements of a script file, one by one (ADBC prepares one statement at a time)."""
        return split_sql(self.read(name))


def split_sql(script: str) -> list[str]:
    """Split one of our own SQL files into statements.

    Statements end with ``;`` at the end of a line; ``$$``-quoted bodies may contain ``;``.
    """
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    for line in script.splitlines():
        if not in_dollar and (not line.strip() or line.strip().startswith("--")):
            continue
        current.append(line)
        if line.count("$$") % 2:
            in_dollar = not in_dollar
        if not in_dollar and line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current and "".join(current).strip():
        statements.append("\n".join(current))
    return statements
