"""What the documentation site generates from the code and from the repository's files, so that it
cannot drift from them. Text out, nothing written: the MkDocs hook (``docs_hooks/hooks.py``) calls
:func:`render` for each ``<!-- totes:NAME ARGS -->…<!-- /totes:NAME -->`` region of a page (what
stands between the two comments is what GitHub shows instead), and
``tests/unit/test_docs_reference.py`` checks the references.

- ``version``: pyproject.toml's ``[project] version``, the one place the version is set (the installed
  package's metadata, which ``totes --version`` prints, is made from it);
- ``settings``: every field of ``tasks.settings.TotesSettings``, its variable, default and description
  (the class docstring's ``Attributes:``: a field without one fails the build);
- ``cli``: every command of ``flows.cli.build_parser()``, its help, options and examples;
- ``source-model``, ``star-model``, ``feed-model`` ``[level=N]``: the tables and columns of
  ``tasks/schema.py``, a heading of level N (default 3) each;
- ``include PATH [shift=N] [notitle]``: a file of the repository (``bench/results/*.md``,
  ``CHANGELOG.md``, ``CONTRIBUTING.md``), its headings moved N levels down, its links into ``docs/``
  made relative to the page; ``image PATH ALT``: an image of the repository (see :data:`IMAGES`).
"""

from __future__ import annotations

import argparse
import inspect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Images the site serves from outside docs/: where the page links to, and the file in the repository.
IMAGES = {"assets/bench/chart.png": "bench/results/chart.png"}

# Where the site says more about a setting than its description (links from reference/settings.md).
SEE_ALSO: dict[str, tuple[str, str]] = {
    "source_primary_url": ("../concepts/watermark.md#a-read-replica-as-the-source", "a read replica"),
    "source_is_copy": ("../concepts/watermark.md#a-read-replica-as-the-source", "a read replica"),
    "source_stamps_are_utc": ("../concepts/watermark.md", "time zones"),
    "fallback_lag_seconds": ("../concepts/watermark.md", "the watermark"),
    "delete_check_bucket_keys": ("../concepts/deletes.md", "deletes"),
    "unchanged_table_recheck_seconds": (
        "../concepts/watermark.md#unchanged-tables-are-not-read",
        "unchanged tables",
    ),
    "database_concurrency": ("../concepts/one-writer.md#connection-slots", "connection slots"),
    "lock_wait_seconds": ("../concepts/one-writer.md", "one writer at a time"),
    "local_prefect_api": ("../guides/local-api.md", "the local API"),
    "local_api_idle_minutes": ("../guides/local-api.md", "the local API"),
    "fan_out": ("../guides/fan-out.md", "fan-out"),
    "fan_out_min_rows": ("../guides/fan-out.md#which-tables-get-a-child", "fan-out"),
    "source_url_secret": ("#database-urls-from-secret-stores", "secret stores"),
    "source_url_block": ("#database-urls-from-secret-stores", "secret stores"),
    "alert_sns_topic_arn": ("../operations/alerts.md", "alerts"),
    "sftp_url": ("../guides/file-feeds.md", "file feeds"),
    "feeds_file": ("../guides/file-feeds.md#declaring-feeds", "declaring feeds"),
    "dimension_history": ("../guides/history-mode.md", "history mode"),
    "schema_drift_policy": ("../guides/schema-drift.md", "schema drift"),
    "pii_columns": ("../guides/pii.md", "personal data"),
    "pii_hash_key": ("../guides/pii.md", "personal data"),
}


def version() -> str:
    """The version of totes: ``[project] version`` in pyproject.toml."""
    with (REPO / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def _markdown(text: str) -> str:
    """A docstring's text as Markdown: ``literal`` -> `literal`."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, one line."""
    return " ".join(text.replace("|", "\\|").split())


# --- the settings ---------------------------------------------------------------------------------

_ENTRY = re.compile(r"^    (?P<names>[a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*): (?P<text>.+)$")
_DEFAULT = re.compile(r"\s*Default: (?P<default>[^\n]+?)\.?$")


@dataclass(frozen=True)
class Setting:
    """One entry of TotesSettings' ``Attributes:``: its fields (one or more), variables, description
    and default (as written in the docstring after ``Default:``, or the fields' own)."""

    fields: tuple[str, ...]
    variables: tuple[str, ...]
    description: str
    default: str


def _default_text(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, dict | list) and not value:
        return "none"
    return str(value)


def settings() -> list[Setting]:
    """Every entry of TotesSettings' docstring, in its order; every field must be in exactly one."""
    from tasks.settings import TotesSettings

    prefix = str(TotesSettings.model_config.get("env_prefix", ""))
    _, found, attributes = inspect.cleandoc(TotesSettings.__doc__ or "").partition("\nAttributes:\n")
    if not found:
        msg = "TotesSettings' docstring has no Attributes: section"
        raise ValueError(msg)
    entries: list[tuple[list[str], list[str]]] = []
    for line in attributes.splitlines():
        if match := _ENTRY.match(line):
            entries.append((match["names"].split(", "), [match["text"]]))
        elif line.startswith("        ") and entries:
            entries[-1][1].append(line.strip())
        elif line.strip():
            msg = f"TotesSettings' Attributes: cannot read the line {line!r}"
            raise ValueError(msg)
    fields = TotesSettings.model_fields
    described = [name for names, _ in entries for name in names]
    problems = [f"{name} has no description" for name in fields if name not in described]
    problems += [f"{name} is described but is not a field" for name in described if name not in fields]
    problems += [f"{name} is described twice" for name in sorted(set(described)) if described.count(name) > 1]
    problems += [f"SEE_ALSO names {name}, not a field" for name in SEE_ALSO if name not in fields]
    if problems:
        msg = "TotesSettings' Attributes: " + "; ".join(problems)
        raise ValueError(msg)
    result = []
    for names, lines in entries:
        text = _markdown(" ".join(lines))
        default = None
        if match := _DEFAULT.search(text):
            text, default = text[: match.start()].rstrip(), match["default"]
        if default is None:
            defaults = list(dict.fromkeys(_default_text(fields[name]) for name in names))
            default = ", ".join(defaults)
        variables = tuple(f"{prefix}{name}".upper() for name in names)
        result.append(Setting(tuple(names), variables, text, default))
    return result


def settings_reference() -> str:
    """The settings as a Markdown table: variable (with an anchor each), meaning, default."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for setting in settings():
        anchors = "".join(f'<span id="{variable.lower()}"></span>' for variable in setting.variables)
        variables = ", ".join(f"`{variable}`" for variable in setting.variables)
        links = dict.fromkeys(SEE_ALSO[name] for name in setting.fields if name in SEE_ALSO)
        see = " See " + ", ".join(f"[{label}]({target})" for target, label in links) + "." if links else ""
        rows.append(f"| {anchors}{variables} | {_cell(setting.description)}{see} | {_cell(setting.default)} |")
    return "\n".join(rows)


# --- the command line -----------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.ArgumentParser], dict[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return dict(action.choices), summaries
    return {}, {}


def commands() -> list[str]:
    """The names of the ``totes`` commands, in the parser's order."""
    from flows.cli.main import build_parser

    return list(_subcommands(build_parser())[0])


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    exclusive = {id(action): group for group in parser._mutually_exclusive_groups for action in group._group_actions}
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        what = action.help or ""
        if action.choices:
            what += (" " if what else "") + "one of " + ", ".join(f"`{choice}`" for choice in action.choices)
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in what:
            what += f" (default {action.default})"
        if action.required:
            what += " (required)"
        if id(action) in exclusive:
            others = [
                formatter._format_action_invocation(other).split(" ")[0]
                for other in exclusive[id(action)]._group_actions
                if other is not action
            ]
            what += " (not with " + ", ".join(f"`{other}`" for other in others) + ")"
        invocation = formatter._format_action_invocation(action)
        if not action.option_strings:
            invocation = f"[{action.dest}]" if action.nargs == "?" else action.dest
        rows.append(f"| `{invocation}` | {_cell(what)} |")
    return ["| option | what it does |", "|---|---|", *rows] if rows else []


def _paragraph(text: str | None) -> str:
    return " ".join((text or "").split())


def cli_reference() -> str:
    """Every ``totes`` command: its summary, description, usage, options and examples, from the parser."""
    from flows.cli.main import build_parser

    parser = build_parser()
    children, summaries = _subcommands(parser)
    out = [
        "## `totes`",
        "",
        _paragraph(parser.description),
        "",
        "```text",
        _usage(parser),
        "```",
        "",
        *_options(parser),
        "",
        _paragraph(parser.epilog),
        "",
    ]
    for name, child in children.items():
        out += [f"## `totes {name}`", "", f"*{_paragraph(summaries[name])}*", "", _paragraph(child.description), ""]
        out += ["```text", _usage(child), "```", ""]
        options = _options(child)
        if options:
            out += [*options, ""]
        examples = (child.epilog or "").partition("examples:")[2].strip().splitlines()
        if examples:
            out += ["Examples:", "", "```sh", *(line.strip() for line in examples), "```", ""]
    return "\n".join(out).rstrip()


# --- the data model -------------------------------------------------------------------------------

# transaction's two order keys are ON DELETE SET NULL; every other foreign key restricts deletes.
_SET_NULL = {("transaction", "sales_order_id"), ("transaction", "purchase_order_id")}


def _sql_type(arrow_type: Any, *, text: str) -> str:
    import pyarrow as pa

    if pa.types.is_int32(arrow_type):
        return "integer"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_string(arrow_type):
        return text
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_time(arrow_type):
        return "time"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return str(arrow_type)


def source_model(level: int = 3) -> str:
    """The source tables of tasks/schema.py: columns, types, NULLs, keys, foreign keys and checks."""
    from tasks import schema

    out = []
    for table in schema.SOURCE_TABLES.values():
        out += [f"{'#' * level} `{table.name}`", "", "| column | type | NULL | notes |", "|---|---|---|---|"]
        for field in table.schema:
            column = field.name
            notes = []
            if column in table.key:
                notes.append("key")
            notes += [
                f"→ [`{ref.parent}`](#{ref.parent})"
                + (" (on delete: set NULL)" if (ref.child, ref.column) in _SET_NULL else "")
                for ref in schema.references_of(table.name)
                if ref.column == column
            ]
            if (table.name, column) in schema.SOURCE_ENUM_COLUMNS:
                notes.append(f"enum `{schema.SOURCE_ENUM_COLUMNS[table.name, column]}`, read as text")
            if column in schema.SOURCE_TEXT_DATE_COLUMNS.get(table.name, ()):
                notes.append("a `yyyy-mm-dd` date, as text")
            if (table.name, column) in schema.SOURCE_POSITIVE_COLUMNS:
                notes.append("at least 1")
            if (table.name, column) in schema.SOURCE_NON_NEGATIVE_COLUMNS:
                notes.append("never negative")
            if column == "created_at":
                notes.append("UTC")
            if column == "last_updated":
                notes.append("UTC; set by the writer on every change: the delta reads by it")
            null = "yes" if (table.name, column) in schema.SOURCE_NULLABLE_COLUMNS else "no"
            out.append(f"| `{column}` | {_sql_type(field.type, text='text')} | {null} | {'; '.join(notes)} |")
        out.append("")
    return "\n".join(out).rstrip()


def star_model(level: int = 3) -> str:
    """The star tables of tasks/schema.py: columns, types, NULLs, keys, what each is built from and
    which dimension each fact column refers to."""
    from tasks import schema
    from tasks.core.asset_keys import STAR_SOURCES

    out = []
    for table in schema.STAR_TABLES.values():
        sources = ", ".join(f"[`{source}`](#{source})" for source in STAR_SOURCES[table.name])
        kind = "fact: one row per version of a source row" if table.name in schema.FACT_TABLES else "dimension"
        out += [f"{'#' * level} `{table.name}`", "", f"A {kind}; built from {sources}.", ""]
        out += ["| column | type | NULL | notes |", "|---|---|---|---|"]
        if table.name in schema.FACT_RECORD_IDS:
            out.append(
                f"| `{schema.FACT_RECORD_IDS[table.name]}` | serial | no | primary key, given by the warehouse |"
            )
        references = schema.FACT_REFERENCES.get(table.name, {})
        for field in table.schema:
            column = field.name
            notes = []
            if column in table.key and len(table.key) == 1:
                notes.append("key")
            elif column == table.key[0]:
                notes.append(
                    "the source id; with " + " and ".join(f"`{c}`" for c in table.key[1:]) + ": the version, unique"
                )
            if column in references:
                notes.append(f"→ [`{references[column]}`](#{references[column]})")
            null = "yes" if (table.name, column) in schema.STAR_NULLABLE_COLUMNS else "no"
            out.append(f"| `{column}` | {_sql_type(field.type, text='varchar')} | {null} | {'; '.join(notes)} |")
        out.append("")
    return "\n".join(out).rstrip()


def feed_model(level: int = 3) -> str:
    """The feed tables of tasks/schema.py, with their lineage columns."""
    from tasks import schema

    out = []
    for table in schema.FEED_TABLES.values():
        out += [f"{'#' * level} `{table.name}`", "", "| column | type | NULL | notes |", "|---|---|---|---|"]
        for field in [*table.schema, *schema.FEED_LINEAGE]:
            note = "natural key" if field.name in table.key else ""
            if field.name in schema.FEED_LINEAGE.names:
                note = "lineage"
            null = "yes" if field.nullable else "no"
            out.append(f"| `{field.name}` | {_sql_type(field.type, text='text')} | {null} | {note} |")
        out.append("")
    return "\n".join(out).rstrip()


# --- files of the repository ----------------------------------------------------------------------

# Links of the repository's root documents, as the site names them.
_SITE_NAMES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md", "CONTRIBUTING.md": "contributing.md"}


def include(path: str, *, shift: int = 0, notitle: bool = False, depth: int = 0) -> str:
    """A file of the repository for a page ``depth`` folders below docs/: headings ``shift`` levels
    down (without its first heading if ``notitle``), links to docs/ and the root documents made
    relative to the page."""
    text = (REPO / path).read_text()
    if notitle:
        text = re.sub(r"\A\s*#[^\n]*\n", "", text, count=1)
    if shift:
        text = re.sub(r"^(#+) ", lambda match: "#" * (len(match[1]) + shift) + " ", text, flags=re.MULTILINE)
    up = "../" * depth

    def relink(match: re.Match[str]) -> str:
        target = match["target"]
        name, _, anchor = target.partition("#")
        if name.startswith("docs/"):
            name = name.removeprefix("docs/")
        elif name in _SITE_NAMES:
            name = _SITE_NAMES[name]
        else:
            return match[0]
        return f"]({up}{name}{'#' + anchor if anchor else ''})"

    return re.sub(r"\]\((?P<target>[^)\s:]+)\)", relink, text).strip()


def render(name: str, args: list[str], *, depth: int = 0) -> str:
    """The Markdown of one generated region of a page ``depth`` folders below docs/."""
    if name == "version":
        return version()
    if name == "settings":
        return settings_reference()
    if name == "cli":
        return cli_reference()
    level = next((int(arg.removeprefix("level=")) for arg in args if arg.startswith("level=")), 3)
    if name == "source-model":
        return source_model(level)
    if name == "star-model":
        return star_model(level)
    if name == "feed-model":
        return feed_model(level)
    if name == "include":
        shift = next((int(arg.removeprefix("shift=")) for arg in args[1:] if arg.startswith("shift=")), 0)
        return include(args[0], shift=shift, notitle="notitle" in args[1:], depth=depth)
    if name == "image":
        target, alt = args[0], " ".join(args[1:])
        if target not in IMAGES:
            msg = f"unknown image {target} (docs_hooks/generate.py IMAGES)"
            raise ValueError(msg)
        return f"![{alt}]({'../' * depth}{target})"
    msg = f"unknown generated region totes:{name}"
    raise ValueError(msg)
