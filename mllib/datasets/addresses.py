"""Which hosts a URL upload may reach: public addresses only, unless the user opts in.

An upload fetches whatever the URL names into a dataset anyone with the project can read; on a
shared server that would let a URL (or a redirect from a public one) read the server's own
network: loopback services, cloud metadata (169.254.169.254), private ranges. So every request
of an upload, redirects included, is checked before it is sent (the host's addresses as this
machine resolves them), and the address the connection actually reached is checked again before
any byte is stored (a name that resolves differently the second time gains nothing).
`--allow-private-urls` or `[data] allow_private_urls = true` opts in.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

from mllib.datasets.errors import SourceError
from mllib.errors import EXIT_USAGE

if TYPE_CHECKING:
    import httpx

OPT_IN = "--allow-private-urls (or [data] allow_private_urls = true in mllib.toml)"


class PrivateAddressError(SourceError):
    """A URL upload would reach a loopback, private or otherwise non-public address."""

    exit_code = EXIT_USAGE


def is_public(address: str) -> bool:
    """Whether an IP address is a public one (not loopback, private, link-local, shared,
    reserved, multicast or unspecified)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_host(host: str, shown_url: str) -> None:
    """Refuse `host` when it is, or resolves to, a non-public address. A name this machine
    cannot resolve is left to the connection (a proxy may resolve it)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return
    for address in sorted(addresses):
        if not is_public(address):
            raise refused(shown_url, host, address)


def check_peer(response: httpx.Response, shown_url: str) -> None:
    """Refuse a response whose connection reached a non-public address (a direct connection;
    behind a proxy the peer is the proxy, which the user chose)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer or proxied(response.request.url):
        return
    if not is_public(peer[0]):
        raise refused(shown_url, response.request.url.host, peer[0])


def proxied(url: httpx.URL) -> bool:
    """Whether the environment sends requests for `url` through a proxy (as httpx does)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return bool(proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(
        url.host
    )


def refused(shown_url: str, host: str, address: str) -> PrivateAddressError:
    where = host if host == address else f"{host} ({address})"
    return PrivateAddressError(
        f"{shown_url} reaches {where}, a loopback or private address: URL uploads fetch only "
        "from public addresses unless asked",
        hint=f"If this is the server you mean, add {OPT_IN}.",
    )
