"""The documentation site's generated parts (``mkdocs.yml`` loads :mod:`docs_hooks.hooks`)."""
