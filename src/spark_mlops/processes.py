"""Is a process (or a process group) still running? The one check, for lock files and servers."""

from __future__ import annotations

import os


def alive(pid: int, *, group: bool = False) -> bool:
    """Signal 0 probes without touching the process: gone -> False; someone else's -> still alive."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
