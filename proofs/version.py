"""The installed version of memspec, for ``--version``."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The version pyproject.toml gives the installed package ("unknown" when the
    sources run without being installed)."""
    try:
        return metadata.version("memspec")
    except metadata.PackageNotFoundError:
        return "unknown"
