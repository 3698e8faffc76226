"""Where the HTTP endpoints listen: ``--web.listen-address`` and binding it.

This module owns the listen address format (``host:port``, ``:port``,
``[v6]:port``) and the policy for turning one into a bound server: an empty
host is every interface, dual-stack where IPv6 works, and a name is tried at
each address it resolves to. What is served there is :mod:`mimecast_exporter.web.server`'s.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any, TypeVar

S = TypeVar("S")
# (sockaddr, address family, dual_stack) -> a bound, listening server
ServerFactory = Callable[[Any, int, bool], S]


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` into its parts; an empty host means all interfaces.

    Accepts ``:9836``, ``127.0.0.1:9836``, ``localhost:9836`` and
    ``[::1]:9836``. Port 0 asks the OS for a free port.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"listen address {text!r}: unterminated or empty [IPv6] host")
        if not rest.startswith(":"):
            raise ValueError(f"listen address {text!r}: expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"listen address {text!r}: expected host:port or :port")
        if ":" in host:
            raise ValueError(f"listen address {text!r}: write IPv6 hosts in brackets, [::1]:9836")
    if not port_text.isdigit():
        raise ValueError(f"listen address {text!r}: port must be a number 0-65535")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"listen address {text!r}: port must be a number 0-65535")
    return host, port


def bind(host: str, port: int, server: ServerFactory[S]) -> S:
    """A server listening on ``host``:``port``, made by ``server(sockaddr, family, dual_stack)``.

    An empty host listens on all interfaces: IPv6 and IPv4 on one dual-stack
    socket where there is IPv6, else IPv4 only. A host name is tried at each
    of its addresses until one binds.
    """
    if host == "":
        if socket.has_dualstack_ipv6():
            try:
                return server(("::", port), socket.AF_INET6, True)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise
                # IPv6 present but unusable (e.g. disabled by sysctl): fall back to IPv4.
        return server(("0.0.0.0", port), socket.AF_INET, False)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    last: OSError | None = None
    for family, _, _, _, sockaddr in infos:
        try:
            return server(sockaddr, family, False)
        except OSError as err:  # e.g. localhost resolving to ::1 without IPv6
            last = err
    raise last or OSError(f"cannot resolve {host!r}")
