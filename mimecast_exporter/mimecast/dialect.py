"""What the reference leaves open in a request, settled per server by asking.

Two things a request says have more than one published spelling, and an
independent server may know only one of them:

- The sort: the endpoint's page (and API 1.0's text) spells ``sortOrder``
  ``ascending``/``descending``, API 2.0's text ``asc``/``desc``; the page's
  JSON sample also sends ``sortBy``, whose one published value is
  ``createTime``. ``sortBy`` is sent with ``sortOrder`` first (a server may
  sort only when told by what), the page's spelling first, for both
  generations; then the other spelling; then each without ``sortBy``; then
  no sort at all (the server's default, newest first:
  :mod:`mimecast_exporter.scan` sees the order and leaves out what would
  need it).
- A route in ``filterBy``: the endpoint's field table says ``{"route": R}``,
  its JSON sample ``{"fieldName": "route", "value": R}``.

A :class:`Choice` moves to the next spelling when a request with the one in
use is refused as invalid, until one is answered; it is then kept. A server
may also answer without applying it, as if it were not there (the scan
notices: dates that fall, a route's message on another route): then the next
spelling is asked from then on, once round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# The sort fields a request carries, in the order they are asked.
SORTS: tuple[Mapping[str, str] | None, ...] = (
    {"sortBy": "createTime", "sortOrder": "ascending"},
    {"sortBy": "createTime", "sortOrder": "asc"},
    {"sortOrder": "ascending"},
    {"sortOrder": "asc"},
    None,
)
ROUTE_FILTERS = ("route", "fieldName")  # {"route": R}, or {"fieldName": "route", "value": R}


class Choice(Generic[T]):
    """One of several spellings, the first that a server answers; ``what`` names
    them in the log ("the sort"). Used by one client (one account and
    queue) at a time."""

    def __init__(self, what: str, spellings: tuple[T, ...]) -> None:
        self.what = what
        self.spellings = spellings
        self.index = 0
        self.settled = False  # a request with it was answered: a refusal is not its fault
        self._cycled = False  # every spelling was found ignored: keep the first for good

    @property
    def current(self) -> T:
        return self.spellings[self.index]

    def answered(self) -> None:
        self.settled = True

    def refused(self, used: int, context: dict[str, object]) -> bool:
        """A request with spelling ``used`` was refused as invalid: whether to ask
        again with the next one. When none is left the fault is elsewhere: the
        first spelling is kept, and a refusal costs one request from then on."""
        if self.settled:
            return False
        if used + 1 >= len(self.spellings):
            self.index, self.settled = 0, True
            return False
        self.index = used + 1
        self._say("refused", used, context)
        return True

    def ignored(self, context: dict[str, object]) -> None:
        """A request was answered as if the spelling in use were not there: the
        next one is asked from the next request on, once round."""
        if self._cycled:
            return
        used = self.index
        self.index = (used + 1) % len(self.spellings)
        self._cycled = self.index == 0
        self.settled = False
        self._say("ignored", used, context)

    def _say(self, how: str, used: int, context: dict[str, object]) -> None:
        following = self.current
        log.warning(
            f"Mimecast {how} {self.what} {json.dumps(self.spellings[used])}; "
            + (
                f"asking with {json.dumps(following)}"
                if following is not None
                else "asking without it"
            ),
            extra=context,
        )
