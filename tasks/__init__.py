"""The work of totes, one room (package) per stage: ``core`` (what every stage shares), ``ingest``,
``transform``, ``load``, ``feeds``, and ``sandbox`` (development only). ``settings.py`` holds the
typed settings, ``schema.py`` the model. See CONTRIBUTING.md for the rooms' rules."""
