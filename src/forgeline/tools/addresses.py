"""Which network addresses the fetch tool may connect to.

The check happens where the connection is made: ``GuardedBackend`` is an httpcore network
back-end that resolves the host itself, refuses addresses that are not public (private,
loopback, link-local, reserved, multicast, shared) unless allowed, and connects to the
address it checked. Every connection of every redirect hop goes through it, so a public
name that resolves to 127.0.0.1, or a redirect to a private address, is refused, and a
second resolution (DNS rebinding) cannot slip past the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from forgeline.errors import ForgelineError

__all__ = ["AddressPolicy", "AddressRefused", "GuardedBackend", "guarded_transport"]


class AddressRefused(ForgelineError):
    """A connection to an address that is not public, and not allowed by the settings."""


class AddressPolicy:
    """``allow_private`` lets every address through; ``private_hosts`` names hosts that
    may resolve to non-public addresses (an intranet's documentation server)."""

    def __init__(self, allow_private: bool = False, private_hosts: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.private_hosts = frozenset(h.lower().rstrip(".") for h in private_hosts)

    def refuses(self, host: str, address: str) -> bool:
        if self.allow_private or host.lower().rstrip(".") in self.private_hosts:
            return False
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return not ip.is_global or ip.is_multicast


class GuardedBackend(AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address (TLS still verifies the
    host name: httpcore passes the URL's host as the server name)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host.strip("[]"), port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if not self.policy.refuses(host, a)]
        if not allowed:
            raise AddressRefused(
                f"{host} resolves to {', '.join(addresses)}, a private, loopback or "
                "link-local address: refused (set [fetch] allow_private, or name the host "
                "in [fetch] private_hosts, to fetch from it)"
            )
        error: Exception | None = None
        for address in allowed:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        raise AddressRefused("the fetch tool does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx builds its connection pool without a way to pass a network back-end;
        # this pool is the same one, with the guarded back-end.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(policy),
        )


def guarded_transport(policy: AddressPolicy) -> httpx.AsyncBaseTransport:
    """An httpx transport that connects only where ``policy`` allows (and never through
    a proxy from the environment: a proxy would resolve the names itself)."""
    return _GuardedTransport(policy)
