"""The simulated vLLM's own helpers (the benchmark relies on them at high concurrency)."""

import os
import resource
import socket

import pytest

from packet.devserver import _peer_closed


def test_peer_closed_works_for_descriptors_above_1023():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"cannot open descriptors above 2048 here (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 2050)
    sock = socket.socket(fileno=high)
    try:
        assert not _peer_closed(sock)
        theirs.close()
        assert _peer_closed(sock)
    finally:
        sock.close()
        ours.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
