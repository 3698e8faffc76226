"""Two things exporter-toolkit's web configuration asks of TLS that Python's
``ssl`` module cannot say, said to OpenSSL directly (through ctypes):

- **ask for a client certificate and accept any** (Go's ``RequestClientCert``
  and ``RequireAnyClientCert``): ``ssl`` always verifies a certificate it asks
  for. :func:`accept_any_client_certificate` sets OpenSSL's verify callback
  to one that accepts every certificate;
- **a list of key exchange groups** (``curve_preferences``): Python 3.11 sets
  one curve at most. :func:`set_groups` sets the list.

Both need the ``SSL_CTX`` behind an ``SSLContext``. It is the first field
after the object header in CPython's ``PySSLContext``; before touching it,
:func:`_ssl_ctx` checks that what it found there is that context (its options
read back equal to ``SSLContext.options``). If anything is not as expected,
:class:`Unsupported` is raised and the setting is refused at start, never
ignored: a hardening setting that silently does nothing is worse than none.
"""

from __future__ import annotations

import ctypes
import ssl
import threading
from typing import Any

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_SSL_CTRL_SET_GROUPS_LIST = 92

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any(preverify_ok: int, store: Any) -> int:
    return 1  # any certificate, whoever issued it: Go's RequireAnyClientCert


_accept = _VERIFY_CALLBACK(_accept_any)


class Unsupported(RuntimeError):
    """This Python or OpenSSL cannot be told what was asked."""


_lock = threading.Lock()
_lib: Any = None


def _openssl() -> Any:
    global _lib
    with _lock:
        if _lib is None:
            try:
                import _ssl  # the extension module; its handle resolves libssl's symbols

                lib = ctypes.CDLL(_ssl.__file__)
                lib.SSL_CTX_get_options.restype = ctypes.c_uint64
                lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
                lib.SSL_CTX_set_verify.restype = None
                lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
                lib.SSL_CTX_ctrl.restype = ctypes.c_long
                lib.SSL_CTX_ctrl.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_int,
                    ctypes.c_long,
                    ctypes.c_void_p,
                ]
            except (OSError, AttributeError, ImportError) as err:
                raise Unsupported(f"OpenSSL's functions are not reachable here: {err}") from None
            _lib = lib
        return _lib


def _ssl_ctx(context: ssl.SSLContext) -> int:
    lib = _openssl()
    header = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(id(context) + header).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != int(context.options):
        raise Unsupported("this Python's SSLContext is not laid out as expected")
    return pointer


def accept_any_client_certificate(context: ssl.SSLContext, *, require: bool) -> None:
    """Ask every client for a certificate and accept any; refuse clients without
    one when ``require``. Call last: setting ``verify_mode`` afterwards undoes it."""
    mode = _SSL_VERIFY_PEER | (_SSL_VERIFY_FAIL_IF_NO_PEER_CERT if require else 0)
    _openssl().SSL_CTX_set_verify(_ssl_ctx(context), mode, _accept)


def set_groups(context: ssl.SSLContext, names: list[str]) -> None:
    """Offer exactly these key exchange groups (OpenSSL names), in this order."""
    wanted = ":".join(names).encode("ascii")
    if not _openssl().SSL_CTX_ctrl(_ssl_ctx(context), _SSL_CTRL_SET_GROUPS_LIST, 0, wanted):
        raise Unsupported(f"OpenSSL here ({ssl.OPENSSL_VERSION}) does not offer {', '.join(names)}")
