"""Worker identities: a process in another network namespace counts as another host."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from workers import runtime


@pytest.fixture(autouse=True)
def fresh_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("QUORUM_WORKER_HOST", raising=False)
    runtime.worker_host.cache_clear()
    yield
    runtime.worker_host.cache_clear()


def test_the_host_is_the_hostname_and_the_network_namespace() -> None:
    netns = os.readlink("/proc/self/ns/net").removeprefix("net:[").rstrip("]")
    assert runtime.worker_host() == f"{socket.gethostname()}~net{netns}"
    assert runtime.identity() == f"{socket.gethostname()}~net{netns}:{os.getpid()}"


def test_quorum_worker_host_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_WORKER_HOST", "rack-7")
    assert runtime.identity() == f"rack-7:{os.getpid()}"


def test_a_holder_of_another_namespace_is_judged_by_its_lease_only() -> None:
    # Our own parent process is alive; named from another namespace, its pid proves nothing.
    other = f"{socket.gethostname()}~net1:{os.getppid()}"
    assert runtime.holder_alive(other) is None
    assert runtime.holder_alive(f"{runtime.worker_host()}:{os.getppid()}") is True
