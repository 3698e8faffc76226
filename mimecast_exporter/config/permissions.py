"""Warnings about config and secret files that other users can read.

Not an error: containers often mount secrets world-readable and the process
may be the only one there. But on a shared host, a world-readable client
secret is worth a line in the log at start.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger("mimecast_exporter.config")


def warn_if_readable_by_others(path: Path, what: str, field_path: str = "") -> bool:
    """Log a warning when ``path`` is readable by users other than owner and group."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # reading it will fail with a clear error of its own
    if not mode & stat.S_IROTH:
        return False
    log.warning(
        f"{what} {path} is readable by every user on this host; "
        f"restrict it, e.g. chmod 600 (or 640 for a group)",
        extra={"field": field_path, "mode": oct(stat.S_IMODE(mode))}
        if field_path
        else {"mode": oct(stat.S_IMODE(mode))},
    )
    return True


_SECRET_KEYS = frozenset({"client_secret", "app_key", "access_key", "secret_key"})


def holds_inline_secret(document: Any) -> bool:
    """True when a secret is written in the document itself, not via *_file or ${VAR}."""
    if isinstance(document, dict):
        return any(
            (key in _SECRET_KEYS and isinstance(value, str) and "${" not in value)
            or holds_inline_secret(value)
            for key, value in document.items()
        )
    if isinstance(document, list):
        return any(holds_inline_secret(item) for item in document)
    return False
