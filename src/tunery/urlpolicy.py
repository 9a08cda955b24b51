"""The one rule for every URL a request may name: a tracker's server, a review's judge.

A shared server must not become a client its callers aim at its own network (SSRF) or a writer of
files where they like. So a URL from a request is http(s) only, carries no credentials, and every
address its host resolves to is public, unless the operator lists the host (a name, an address or
a CIDR) in TUNERY_URL_ALLOW_HOSTS:

    policy = UrlPolicy.of(["mlflow.internal", "10.0.0.0/8"])
    policy.check("http://mlflow.internal:5000", param="tunery.mlflow.tracking_uri")   # fine
    policy.check("http://127.0.0.1:6379/", param="base_url")                          # UrlNotAllowed

The check runs where the request comes in and again where the URL is used (DNS can change in
between): `guarded_transport` checks the address each connection is made to. What the operator
writes in the server's own settings is trusted and never goes through here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tunery.errors import TuneryError

SCHEMES = ("http", "https")
SETTING = "TUNERY_URL_ALLOW_HOSTS"
# How the job runner hands the server's policy to the training process (and torchrun's ranks).
JOB_ENV = "TUNERY_JOB_URL_ALLOW_HOSTS"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlNotAllowed(TuneryError):
    """A URL from a request that this server will not call; `param` names the field that held it."""

    code = "url_not_allowed"

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class UrlPolicy:
    """Public hosts, plus the host names and networks the operator allows."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allow_hosts: Iterable[str]) -> UrlPolicy:
        names, networks = set(), []
        for entry in (str(e).strip() for e in allow_hosts):
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(_plain_name(entry))
        return cls(frozenset(names - {""}), tuple(networks))

    @classmethod
    def for_this_job(cls) -> UrlPolicy | None:
        """The server's policy inside a job's training process; None for `tunery train` on one's own machine."""
        given = os.environ.get(JOB_ENV)
        return None if given is None else cls.of(json.loads(given))

    def job_env(self) -> dict[str, str]:
        """What the job runner adds to the training process's environment."""
        return {JOB_ENV: json.dumps(sorted(self.names) + [str(n) for n in self.networks])}

    def check(self, url: str, param: str) -> str:
        """The URL's host when the server may call it; else UrlNotAllowed saying what to do."""
        host, port = self._parts(url, param)
        if host in self.names:
            return host
        self.check_addresses(host, resolve(host, port, param), param)
        return host

    def check_addresses(self, host: str, addresses: list[Address], param: str) -> None:
        for address in addresses:
            if not self._allows(address):
                raise UrlNotAllowed(
                    f"{param}: {host} is {_kind(address)} ({address}), which this server does not call "
                    f"for a request; ask its operator to add {host} to {SETTING} if it should",
                    param,
                )

    def _allows(self, address: Address) -> bool:
        plain = _unwrapped(address)
        if any(plain in network or address in network for network in self.networks):
            return True
        return plain.is_global and not plain.is_multicast

    @staticmethod
    def _parts(url: str, param: str) -> tuple[str, int]:
        if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
            raise UrlNotAllowed(f"{param}: the URL holds spaces, control characters or backslashes", param)
        parts = urlsplit(url)
        if parts.scheme.lower() not in SCHEMES:
            raise UrlNotAllowed(
                f"{param}: only http:// and https:// URLs of a server are accepted from a request "
                f"(not {parts.scheme + ':' if parts.scheme else 'a path'}); the server's operator "
                "configures files and databases",
                param,
            )
        if "@" in parts.netloc:
            raise UrlNotAllowed(
                f"{param}: a URL with credentials (user@host) is not accepted; give a key in its own field",
                param,
            )
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise UrlNotAllowed(f"{param}: the URL's port is not a number from 0 to 65535", param) from None
        host = _plain_name(parts.hostname or "")
        if not host:
            raise UrlNotAllowed(f"{param}: the URL names no host", param)
        return host, port


def resolve(host: str, port: int, param: str) -> list[Address]:
    """Every address the host name stands for (an address literal, in any spelling, is itself)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UrlNotAllowed(f"{param}: the host {host} cannot be resolved from this server", param) from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


def _plain_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _unwrapped(address: Address) -> Address:
    """An IPv4 address carried in IPv6 (mapped, 6to4) as itself, so ::ffff:127.0.0.1 is loopback."""
    if isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def _kind(address: Address) -> str:
    plain = _unwrapped(address)
    for test, name in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_private", "a private address"),
    ):
        if getattr(plain, test):
            return name
    return "not a public address"


def guarded_transport(policy: UrlPolicy, param: str, **options: Any) -> Any:
    """An httpx2 transport that checks the address of every connection it makes (not just the URL's
    name before the request: DNS may answer differently the second time) and connects to that address."""
    import httpcore2
    import httpx2

    class CheckedBackend(httpcore2.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore2.AnyIOBackend()

        async def connect_tcp(
            self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore2.AsyncNetworkStream:  # fmt: skip
            import anyio

            name = _plain_name(host)
            addresses = await anyio.to_thread.run_sync(resolve, name, port, param)
            if name not in policy.names:
                policy.check_addresses(name, addresses, param)
            return await self.inner.connect_tcp(
                str(addresses[0]),
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    transport = httpx2.AsyncHTTPTransport(trust_env=False, **options)
    pool = transport._pool
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=pool._ssl_context, network_backend=CheckedBackend(), retries=0
    )
    return transport
