"""A second "host" on this machine: a network namespace joined to ours by a veth pair.

Processes started with :attr:`NetnsHost.prefix` see only the veth link: they reach the
services of the first host at :attr:`NetnsHost.gateway` (which those services must listen
on), and nothing else. :meth:`partition` cuts the link (packets are dropped, connections
stall as behind a failed switch) and :meth:`reconnect` restores it. Needs root
(``ip netns``).
"""

from __future__ import annotations

import secrets
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class NetnsHost:
    def __init__(self, *, subnet: int | None = None) -> None:
        tag = secrets.token_hex(3)
        self.name = f"quorum-{tag}"
        self.host_if = f"qh{tag}"
        self.ns_if = f"qn{tag}"
        third = subnet if subnet is not None else secrets.randbelow(200) + 20
        # A /30 of its own: the first host's end and this host's end.
        self.gateway = f"10.231.{third}.1"
        self.address = f"10.231.{third}.2"
        self.network = f"10.231.{third}.0/30"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self._in_ns("ip", "addr", "add", f"{self.address}/30", "dev", self.ns_if)
            self._in_ns("ip", "link", "set", self.ns_if, "up")
            self._in_ns("ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise
        self.cut = False

    @property
    def prefix(self) -> list[str]:
        """Put in front of a command to run it on this host."""
        return ["ip", "netns", "exec", self.name]

    def _in_ns(self, *cmd: str) -> None:
        subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, check=True)

    def net_id(self) -> str:
        """The namespace's inode, as worker identities name it (``host~net<inode>``)."""
        out = subprocess.run(
            [*self.prefix, "readlink", "/proc/self/ns/net"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().removeprefix("net:[").rstrip("]")

    def partition(self) -> None:
        """Drop every packet between the hosts until :meth:`reconnect`."""
        _ip("link", "set", self.host_if, "down")
        self.cut = True

    def reconnect(self) -> None:
        _ip("link", "set", self.host_if, "up")
        self.cut = False

    def close(self) -> None:
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
