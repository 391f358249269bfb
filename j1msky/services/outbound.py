"""Outbound HTTP (provider calls, webhook deliveries) through requests' adapters.

Not through a requests.Session: a Session merges proxy and CA settings from the
environment on every call, about half the CPU a call spends before its bytes leave.
The environment is read here instead, once per process (proxies) or per call (CA).
"""
from __future__ import annotations

import functools
import os
import threading

from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

_local = threading.local()


def adapter(kind: type[HTTPAdapter] = HTTPAdapter) -> HTTPAdapter:
    """This thread's adapter of that kind: its connections are kept alive for the next
    call, and no other thread's pool fills up with them."""
    adapters = _local.__dict__.setdefault("adapters", {})
    if kind not in adapters:
        adapters[kind] = kind()
    return adapters[kind]


def ca_bundle() -> str | bool:
    """What requests would verify https against: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE,
    else its own CA bundle."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


@functools.lru_cache(maxsize=256)
def environ_proxies(url: str) -> dict:
    """The proxy a Session would use for url (HTTPS_PROXY, NO_PROXY, ...), as read from
    the environment the first time url is asked for."""
    return get_environ_proxies(url)
