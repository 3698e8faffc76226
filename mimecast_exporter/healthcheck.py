"""``python -m mimecast_exporter.healthcheck``: is the exporter on this host serving?

For a container's HEALTHCHECK, which cannot see the exporter's flags: it must
work whether the endpoints are plain HTTP, TLS, or behind basic auth.

- It asks ``/-/healthy`` on 127.0.0.1 (port 9836, or ``--port``) over plain
  HTTP. An exporter with TLS answers that with 400 "Client sent an HTTP
  request to an HTTPS server", and the check asks again over TLS. The
  certificate is not verified: the check talks to its own host, and a
  certificate names the exporter's public name, not 127.0.0.1.
- 200 is healthy. So is 401 with the exporter's own ``WWW-Authenticate``
  realm: the server is up and guarding its endpoints (``/-/healthy`` is
  behind basic auth unless ``auth_excluded_paths`` lists it).
- Anything else (nothing listening, a timeout, another answer) is unhealthy.

Exit code 0 when healthy, 1 when not, with one line saying why.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
from collections.abc import Sequence

from mimecast_exporter.logs import survive_any_locale
from mimecast_exporter.web.auth import PLAIN_HTTP_ANSWER, REALM

DEFAULT_PORT = 9836
_TLS_HINT = PLAIN_HTTP_ANSWER.rsplit(b"\r\n\r\n", 1)[1].decode().strip()


def probe(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """(healthy, why) for the exporter at host:port."""
    try:
        status, headers, body = _get(http.client.HTTPConnection(host, port, timeout=timeout))
        if status == 400 and _TLS_HINT in body:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # our own host: see the module's docstring
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            status, headers, body = _get(connection)
    except (OSError, http.client.HTTPException) as err:
        return False, f"no answer from {host}:{port}: {err}"
    if status == 200:
        return True, "healthy"
    if status == 401 and f'realm="{REALM}"' in headers.get("WWW-Authenticate", ""):
        return True, "serving, behind basic auth"
    return False, f"/-/healthy answered HTTP {status}"


def _get(connection: http.client.HTTPConnection) -> tuple[int, dict[str, str], str]:
    try:
        connection.request("GET", "/-/healthy")
        response = connection.getresponse()
        body = response.read(4096).decode("utf-8", "replace")
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    survive_any_locale()
    parser = argparse.ArgumentParser(
        prog="python -m mimecast_exporter.healthcheck", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    healthy, why = probe(args.host, args.port, args.timeout)
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
