"""Types of the C extension mimecast_exporter/_pagesum.c and mimecast_exporter/_pageframe.c (see their comments)."""

from typing import Any

RouteSums = tuple[
    int,  # messages
    int,  # size, bytes
    int,  # attempts
    int,  # max attempts
    tuple[int, ...],  # size histogram counts (not cumulative; +Inf last)
    tuple[int, ...],  # age histogram counts
    float,  # the route's running age sum, this page's ages added on
    float,  # oldest creation time (epoch seconds)
    tuple[int, ...],  # messages per status index (status_cache hits)
    dict[Any, int] | None,  # info -> messages, for infos status_cache did not hold
    int,  # locked
    int,  # retry overdue
    int,  # lockedUntil absent (UNSET)
    int,  # nextAttempt absent (UNSET)
]

def summarize(
    messages: list[Any],
    message_type: type,
    routes: dict[str, int],
    status_cache: dict[str, int],
    unset: object,
    now: float,
    now_us: int,
    overdue_us: int,
    size_bounds: tuple[float, ...],
    age_bounds: tuple[float, ...],
    max_count: int,
    statuses: int,
    keep: int,
    newest: float,
    falls: bool,
    cut: float,
    age_sums: tuple[float, ...],
    /,
) -> tuple[tuple[RouteSums | None, ...], float, bool, list[tuple[float, int]]] | None: ...
def frame(
    body: bytes | bytearray | memoryview, /
) -> tuple[tuple[int, int] | None, tuple[int, int] | None, bytes] | None:
    """(meta span, fail span, table) or None: see mimecast_exporter/_pageframe.c."""

def sum_frame(
    body: bytes | bytearray | memoryview,
    table: bytes,
    routes: dict[str, int],
    status_cache: dict[str, int],
    unset: object,
    now: float,
    now_us: int,
    overdue_us: int,
    size_bounds: tuple[float, ...],
    age_bounds: tuple[float, ...],
    max_count: int,
    statuses: int,
    keep: int,
    newest: float,
    falls: bool,
    cut: float,
    age_sums: tuple[float, ...],
    /,
) -> tuple[tuple[RouteSums | None, ...], float, bool, list[tuple[float, int]]] | None: ...
