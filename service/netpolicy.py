"""Where the service may send outbound requests (webhooks): http(s) to public addresses only.

A destination is checked by resolving its host once and judging every address it resolves to; the
caller then connects to that checked address (never resolving again, so a DNS answer that changes
between check and connect cannot redirect it). Refused: loopback, private (RFC 1918, ULA), link-local
(169.254/16 with the cloud metadata service, fe80::/10), CGNAT 100.64/10, multicast, unspecified,
broadcast, reserved and documentation ranges, in every spelling the resolver accepts (integer
2130706433, hex, short 127.1, IPv4-mapped/compatible, 6to4 and NAT64 IPv6 that embed an IPv4), plus
cloud metadata host names. An operator allowlist (networks or host names) lets internal receivers in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# Names that reach a cloud provider's instance metadata service (credentials) on some platforms.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "metadata.packet.net",
    }
)
# Not globally routable, though Python's is_global says otherwise for some of them.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT (carrier-grade NAT, also some cloud internals)
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("255.255.255.255/32"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class DestinationRefused(ValueError):
    """The URL may not be connected to; the message says why, for the user."""


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Entries like "10.20.0.0/16", "192.168.1.5", "hooks.internal" (exact host name)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(networks=tuple(networks), hosts=frozenset(hosts))

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to `address`, send `host_header`, verify TLS for `host`."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    host_header: str

    def connect_url(self) -> str:
        """The URL with its host replaced by the checked address (path and query unchanged)."""
        parts = urlsplit(self.url)
        ip = ipaddress.ip_address(self.address)
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        rest = parts.path or "/"
        if parts.query:
            rest += f"?{parts.query}"
        return f"{self.scheme}://{literal}:{self.port}{rest}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why this address is not a public destination; None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) IPv6 address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            problem = address_problem(inner)
            return f"an IPv6 address embedding {inner}, {problem}" if problem else None
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip.version == net.version and ip in net for net in _EXTRA_BLOCKED):
        return "a carrier-grade NAT, broadcast or reserved address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved or non-routable address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (numeric forms such as 2130706433 included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, lower-case host without brackets, port) of an http(s) URL, or DestinationRefused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise DestinationRefused("only http:// and https:// URLs are allowed")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("URLs with credentials (user@host) are not allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise DestinationRefused("the URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def check_destination(
    url: str, allow: Allowlist, *, resolver: Resolver = system_resolver, unresolvable_ok: bool = False
) -> Target | None:
    """The checked Target, or DestinationRefused. unresolvable_ok (submit time, when the receiver's DNS
    name may not exist yet): a name that does not resolve returns None; it is checked again at connect."""
    scheme, host, port = split_url(url)
    by_name = host in allow.hosts
    if not by_name:
        if host in METADATA_HOSTS:
            raise DestinationRefused(f"{host} is a cloud metadata service name")
        if host == "localhost" or host.endswith(".localhost"):
            raise DestinationRefused(f"{host} is a loopback name")
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        if unresolvable_ok:
            return None
        raise DestinationRefused(f"{host} does not resolve ({exc})") from exc
    if not addresses:
        raise DestinationRefused(f"{host} resolves to no address")
    checked: list[str] = []
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        problem = None if by_name or allow.allows_address(ip) else address_problem(ip)
        if problem:
            shown = host if host == str(ip) else f"{host} ({ip})"
            raise DestinationRefused(
                f"{shown} is {problem}; webhooks go to public addresses only "
                "(an operator can allow internal receivers with EDGEDISTILL_WEBHOOK_ALLOWLIST)"
            )
        checked.append(str(ip))
    default_port = 443 if scheme == "https" else 80
    host_literal = f"[{host}]" if ":" in host else host
    host_header = host_literal if port == default_port else f"{host_literal}:{port}"
    return Target(url=url, scheme=scheme, host=host, port=port, address=checked[0], host_header=host_header)
