"""The webhook destination policy: every spelling of an internal address is refused."""

from __future__ import annotations

import pytest

from edgedistill.service.netpolicy import Allowlist, DestinationRefused, check_destination

REFUSED = [
    "http://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.5.4/",
    "http://[::1]/",
    "http://localhost:6379/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 as one integer
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://instance-data/",
    "http://100.64.0.1/",  # CGNAT
    "http://100.127.255.254/",
    "http://224.0.0.1/",  # multicast
    "http://239.255.255.250:1900/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:7f00:1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://255.255.255.255/",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "http://user:pw@example.com/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_destinations_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        check_destination(url, Allowlist())


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    with pytest.raises(DestinationRefused, match="private"):
        check_destination("https://mixed.example/x", Allowlist(), resolver=resolver)
    target = check_destination("https://ok.example/x", Allowlist(), resolver=lambda h, p: ["93.184.216.34"])
    assert target is not None and target.address == "93.184.216.34" and target.port == 443
    assert target.connect_url() == "https://93.184.216.34:443/x" and target.host_header == "ok.example"


def test_public_addresses_pass_and_unresolvable_names_wait_for_connect_time() -> None:
    for url in ("http://8.8.8.8/", "https://[2606:4700:4700::1111]:8443/h", "http://[::ffff:8.8.8.8]/"):
        assert check_destination(url, Allowlist()) is not None, url

    def nxdomain(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    assert check_destination("https://later.example/", Allowlist(), resolver=nxdomain, unresolvable_ok=True) is None
    with pytest.raises(DestinationRefused, match="does not resolve"):
        check_destination("https://later.example/", Allowlist(), resolver=nxdomain)


def test_the_operator_allowlist_lets_internal_receivers_in() -> None:
    allow = Allowlist.parse(["10.20.0.0/16", "hooks.internal", "[::1]"])
    assert check_destination("http://10.20.3.4:9000/h", allow) is not None
    assert check_destination("http://[::1]:9000/h", allow) is not None
    with pytest.raises(DestinationRefused):
        check_destination("http://10.21.0.1/h", allow)
    target = check_destination("http://hooks.internal/h", allow, resolver=lambda h, p: ["10.99.0.7"])
    assert target is not None and target.address == "10.99.0.7"
