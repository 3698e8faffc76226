"""The ``/_simulator/*`` control endpoints, for tests that run the simulator as a process.

They are NOT authenticated: anyone who can reach the port can inject faults or
expire tokens, which is why the simulator is meant for loopback only.

- ``POST /_simulator/faults``: add a fault (JSON body: the :class:`Fault` fields)
- ``GET /_simulator/faults``: list the active faults
- ``DELETE /_simulator/faults``: remove every fault
- ``POST /_simulator/expire-tokens``: every token issued so far answers ``token_expired``
- ``GET /_simulator/state``: scenario, model time and queue sizes per tenant
- ``GET /_simulator/quirks``, ``PUT /_simulator/quirks``: what the simulator ignores
  (JSON body: the :class:`Quirks` fields, e.g. ``{"ignore_sort_order": true}``)
- ``GET /_simulator/churn``, ``PUT /_simulator/churn``: how the queues move while
  they are read (JSON body: the :class:`Churn` fields, e.g. ``{"leave": 1, "arrive": 1}``)
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.simulator.model import Churn
from mimecast_exporter.simulator.responses import Response, json_response

if TYPE_CHECKING:
    from mimecast_exporter.simulator.api import Incoming
    from mimecast_exporter.simulator.server import SimulatorServer

PREFIX = "/_simulator/"


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def handle_control(sim: SimulatorServer, req: Incoming) -> Response:
    """Answer one control request."""
    routes: dict[tuple[str, str], Any] = {
        ("POST", "faults"): _add_fault,
        ("GET", "faults"): lambda s, r: _faults(s),
        ("DELETE", "faults"): _clear_faults,
        ("POST", "expire-tokens"): lambda s, r: json_response(200, {"expired": s.expire_tokens()}),
        ("GET", "state"): lambda s, r: json_response(200, s.state()),
        ("GET", "quirks"): lambda s, r: json_response(200, dataclasses.asdict(s.quirks)),
        ("PUT", "quirks"): _setting("quirks", Quirks),
        ("GET", "churn"): lambda s, r: json_response(200, dataclasses.asdict(s.churn)),
        ("PUT", "churn"): _setting("churn", Churn),
    }
    name = req.path[len(PREFIX) :]
    handler = routes.get((req.method, name))
    if handler is None:
        if any(n == name for _, n in routes):
            return _error(405, f"{req.method} not allowed on {req.path}")
        return _error(404, f"no control endpoint at {req.path}")
    response: Response = handler(sim, req)
    return response


def _faults(sim: SimulatorServer) -> Response:
    return json_response(200, {"faults": [dataclasses.asdict(f) for f in sim.faults.active()]})


def _add_fault(sim: SimulatorServer, req: Incoming) -> Response:
    try:
        fault = Fault.from_dict(req.json)
    except ValueError as exc:
        return _error(400, str(exc))
    sim.faults.add(fault)
    return json_response(201, {"fault": dataclasses.asdict(fault), "active": len(sim.faults)})


def _setting(name: str, kind: type[Quirks] | type[Churn]) -> Any:
    """A PUT handler that sets ``sim.<name>`` from the body's ``kind`` fields."""

    def put(sim: SimulatorServer, req: Incoming) -> Response:
        try:
            setattr(sim, name, kind.from_dict(req.json))
        except ValueError as exc:
            return _error(400, str(exc))
        return json_response(200, dataclasses.asdict(getattr(sim, name)))

    return put


def _clear_faults(sim: SimulatorServer, req: Incoming) -> Response:
    sim.faults.clear()
    return json_response(200, {"active": 0})
