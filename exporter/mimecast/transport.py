"""HTTP to one Mimecast host: a urllib3 pool whose settings are read once.

requests runs on urllib3 but does a lot around every request (reads the
environment for proxies and CA bundles, merges cookies, hooks and settings):
profiled at pages of 500 messages, that cost more CPU than decoding the answer.
The exporter needs none of it per request, so it reads the environment once
here, as requests would (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``), and talks to urllib3 directly.

TLS is always verified: against ``tls_config.ca_file`` when the account has
one, else the environment's bundle, else certifi's (as requests does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests.certs
import requests.utils
import urllib3

# What requests sent by default; kept so that Mimecast sees the same requests.
DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


@dataclass(frozen=True)
class Transport:
    pool: urllib3.PoolManager  # or a ProxyManager tunnelling through a proxy
    proxy: str | None = None  # for the logs: where requests go through

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> urllib3.BaseHTTPResponse:
        """Send; the answer's body is left to read (preload_content=False).

        Raises urllib3's exceptions as they are: no retries, no redirects
        (the client's retry policy decides).
        """
        return self.pool.urlopen(
            "POST",
            url,
            body=body,
            headers={**DEFAULT_HEADERS, **headers},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )


def transport_for(
    base_url: str, ca_file: str | None, environ: Mapping[str, str] = os.environ
) -> Transport:
    """The transport for one account: its proxy (unless NO_PROXY says not) and CA bundle."""
    bundle = (
        ca_file
        or environ.get("REQUESTS_CA_BUNDLE")
        or environ.get("CURL_CA_BUNDLE")
        or requests.certs.where()
    )
    tls = {"cert_reqs": "CERT_REQUIRED"}
    if os.path.isdir(bundle):
        tls["ca_cert_dir"] = bundle
    else:
        tls["ca_certs"] = bundle
    proxy = _proxy_for(base_url)
    if proxy is None:
        return Transport(urllib3.PoolManager(**tls))
    parts = urlsplit(proxy)
    headers = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
        proxy = proxy.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
    return Transport(urllib3.ProxyManager(proxy, proxy_headers=headers, **tls), proxy)


def _proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment, as requests chooses it."""
    proxies = requests.utils.get_environ_proxies(url)  # {} when NO_PROXY matches
    scheme = urlsplit(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
