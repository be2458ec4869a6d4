"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml): the version in the footer, the
generated regions of the pages (``docs_hooks/generate.py``), and the images served from outside
``docs/``. A generated region that cannot be made (a setting without a description, say) fails the
build."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# MkDocs loads this file by its path: the repository's root makes docs_hooks, tasks and flows importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs_hooks import generate  # noqa: E402 - after the path above

_REGION = re.compile(r"<!-- totes:(?P<name>[a-z-]+)(?P<args>[^>]*?) -->.*?<!-- /totes:(?P=name) -->", re.DOTALL)


def on_config(config: Any) -> Any:
    version = generate.version()
    config.extra["totes_version"] = version
    config.copyright = f"totes {version}"
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for target, source in generate.IMAGES.items():
        files.append(File.generated(config, target, abs_src_path=str(generate.REPO / source)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    depth = page.file.src_uri.count("/")
    return _REGION.sub(lambda match: generate.render(match["name"], match["args"].split(), depth=depth), markdown)
