"""File feeds: SFTP -> versioned raw zone -> staging zone -> warehouse. Pure: ``declarations``,
``parsing``, ``plans``; I/O: ``sftp``, ``store``; Prefect tasks: ``fetch``, ``stage``, ``load``, ``report``."""
