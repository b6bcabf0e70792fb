"""is_loopback: which configured hosts only listen on this machine."""

from __future__ import annotations

import pytest

from server.core.net import is_loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    """Names and addresses of this machine count as loopback."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "pondwatch.example.com", ""])
def test_other_hosts(host: str) -> None:
    """Wildcards, LAN addresses, other names and nothing at all do not."""
    assert not is_loopback(host)
