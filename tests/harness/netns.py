"""A "node" of the test's own: a network namespace joined to this host by a veth pair, with a
relay on the host side that forwards one port to a local server, and a cut that drops packets
silently in one direction or both.

    with NetworkNode.make("pg") as node:
        relay = node.relay_to(5432)           # host-side address and port, seen from the node
        ... a process in the node (`enter` in it, or `ip netns exec node.name …`) uses relay
        node.cut("both")                      # or "replies": it can send, not receive
        node.heal()

Only the namespace, the pair of interfaces and the addresses made here are touched: the node's
traffic goes to the relay's address, never to anything else. Linux's `blackhole` queueing
discipline drops every packet leaving an interface and tells no one (no ICMP, no error to the
sender), as a pulled cable or a dead switch does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from tests.harness.relay import Relay

CLONE_NEWNET = 0x40000000
Direction = Literal["both", "replies", "requests"]


def available() -> str | None:
    """Why network nodes cannot be made here, or None."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2's ip and tc"
    name = f"hpo-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _quiet(*command: str) -> None:
    subprocess.run(list(command), capture_output=True, text=True)


@dataclass
class NetworkNode:
    name: str
    host_side: str  # interface names
    node_side: str
    host_address: str
    node_address: str
    _relays: list[Relay] = field(default_factory=list)
    _cut: set[str] = field(default_factory=set)

    @classmethod
    @contextlib.contextmanager
    def make(cls, label: str) -> Iterator[NetworkNode]:
        tag = uuid.uuid4().hex[:6]
        # A /30 of 10.231.0.0/16 per node, drawn at random: tests that run at once differ.
        block = int(tag, 16) % 16384
        base = f"10.231.{block // 64}.{(block % 64) * 4}"
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        node = cls(
            name=f"hpo-{label}-{tag}",
            host_side=f"hh{tag}",
            node_side=f"hn{tag}",
            host_address=f"{prefix}.{last + 1}",
            node_address=f"{prefix}.{last + 2}",
        )
        try:
            _ip("netns", "add", node.name)
            _ip("link", "add", node.host_side, "type", "veth", "peer", "name", node.node_side)
            _ip("link", "set", node.node_side, "netns", node.name)
            _ip("addr", "add", f"{node.host_address}/30", "dev", node.host_side)
            _ip("link", "set", node.host_side, "up")
            inside = ("netns", "exec", node.name, "ip")
            _ip(*inside, "addr", "add", f"{node.node_address}/30", "dev", node.node_side)
            _ip(*inside, "link", "set", node.node_side, "up")
            _ip(*inside, "link", "set", "lo", "up")
            yield node
        finally:
            for relay in node._relays:
                relay.close()
            _quiet("ip", "link", "del", node.host_side)  # takes its peer with it
            _quiet("ip", "netns", "del", node.name)

    def relay_to(self, port: int) -> tuple[str, int]:
        """Forward a port of the host-side address to 127.0.0.1:`port`; the address to use."""
        relay = Relay(self.host_address, port)
        self._relays.append(relay)
        return self.host_address, relay.port

    def cut(self, direction: Direction = "both") -> None:
        """Drop packets silently: `replies` (host → node: the node can send and not receive),
        `requests` (node → host), or `both`."""
        if direction in ("both", "replies"):
            self._blackhole(self.host_side, inside=False)
        if direction in ("both", "requests"):
            self._blackhole(self.node_side, inside=True)

    def heal(self) -> None:
        for interface in list(self._cut):
            inside = interface == self.node_side
            prefix = ["ip", "netns", "exec", self.name] if inside else []
            subprocess.run(
                [*prefix, "tc", "qdisc", "del", "dev", interface, "root"],
                check=True,
                capture_output=True,
            )
            self._cut.discard(interface)

    def _blackhole(self, interface: str, *, inside: bool) -> None:
        prefix = ["ip", "netns", "exec", self.name] if inside else []
        subprocess.run(
            [*prefix, "tc", "qdisc", "add", "dev", interface, "root", "blackhole"],
            check=True,
            capture_output=True,
        )
        self._cut.add(interface)


def enter(name: str) -> None:
    """Move the calling process into network namespace `name` (as `ip netns exec` does). Call it
    before the process starts threads: each thread has its own, and new ones take their
    creator's."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
