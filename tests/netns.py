"""Separate "hosts" on one machine: Linux network namespaces on a bridge, for the multi-host tests.

Each host is a network namespace with its own loopback, attached to a bridge in the root
namespace by a veth pair (a cable): it reaches the root namespace, where Redis listens, only
over that link, and its workers run with their own home, temporary and working directory.
Cutting a host's link (:meth:`Host.cut`) is pulling its cable: its processes live on, their TCP
connections stall, and they resume when the link comes back (:meth:`Host.restore`).

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN: ``ip netns exec`` mounts /sys) and iproute2's
``ip``; :func:`check_network_namespaces` says what is missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from coordinator.interfaces.stack import WorkerProcess
from proj.settings import Settings

# Each test session picks a free /24 in here for its bridge.
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")


class NetnsUnavailableError(RuntimeError):
    """Network namespaces cannot be made here; the message names what is missing."""


def ip_binary() -> str:
    found = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)
    if found is None:
        raise NetnsUnavailableError(
            "the `ip` command (iproute2) is missing: install Debian's iproute2 package (apt-get install iproute2)"
        )
    return found


def ip(*args: str) -> str:
    """Run ``ip <args>``; raise with its error output when it fails."""
    done = subprocess.run([ip_binary(), *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)
    return done.stdout


def check_network_namespaces() -> None:
    """Make and remove a namespace and a veth pair; raise :class:`NetnsUnavailableError` naming
    what is missing when this process may not."""
    probe = f"ac-probe-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
        try:
            ip("link", "add", probe[:15], "type", "veth", "peer", "name", "eth0", "netns", probe)
            ip("netns", "exec", probe, "true")
        finally:
            ip("netns", "del", probe)
    except subprocess.CalledProcessError as exc:
        raise NetnsUnavailableError(
            f"cannot create a network namespace and a veth link (`{' '.join(exc.cmd)}`: {exc.stderr.strip()}): "
            "the multi-host tests need root, or the capabilities CAP_NET_ADMIN and CAP_SYS_ADMIN "
            "(e.g. `sudo make test`, or a container run with --cap-add NET_ADMIN --cap-add SYS_ADMIN), "
            "and the veth and bridge kernel modules"
        ) from None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of :data:`SUBNETS` that no interface here has an address in."""
    used = ip("-4", "-o", "addr", "show")
    candidates = list(SUBNETS.subnets(new_prefix=24))[1:-1]
    random.shuffle(candidates)
    for subnet in candidates:
        prefix = str(subnet.network_address).rsplit(".", 1)[0] + "."
        if f" {prefix}" not in used:
            return subnet
    raise NetnsUnavailableError(f"no free /24 left in {SUBNETS} for the test network")


@dataclass
class Host:
    """One host: a network namespace, its address, its cable (the root side of its veth pair)
    and its own directory (home, TMPDIR and working directory of what runs there)."""

    name: str
    netns: str
    address: str
    link: str
    home: Path

    def cut(self) -> None:
        """Pull the cable: nothing reaches the host or leaves it until :meth:`restore`."""
        ip("link", "set", self.link, "down")

    def restore(self) -> None:
        ip("link", "set", self.link, "up")

    def is_up(self) -> bool:
        """Whether the cable is plugged in (the link is administratively up)."""
        flags = ip("-o", "link", "show", self.link).split("<", 1)[1].split(">", 1)[0]
        return "UP" in flags.split(",")

    def pids(self) -> list[int]:
        """Processes running in the host's namespace."""
        try:
            return [int(pid) for pid in ip("netns", "pids", self.netns).split()]
        except subprocess.CalledProcessError:
            return []

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as run on the host: in its namespace, in its own directory."""
        home = str(self.home)
        return [ip_binary(), "netns", "exec", self.netns, "env", "-C", home, f"HOME={home}", f"TMPDIR={home}", *argv]


class Network:
    """A bridge in the root namespace with an address (:attr:`gateway`) and hosts attached to it,
    each in its own network namespace. :meth:`close` removes everything, whatever state it is in.

    Example:
        >>> with Network(["h1", "h2"]) as net:  # doctest: +SKIP
        ...     subprocess.run(net.hosts["h1"].command(["ping", "-c1", net.gateway]))
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"ac{self.tag}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self._bridge_made = False

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: the only address the hosts can reach."""
        assert self.subnet is not None, "start() first"
        return str(self.subnet.network_address + 1)

    def start(self) -> Network:
        check_network_namespaces()
        try:
            self.subnet = _free_subnet()
            ip("link", "add", self.bridge, "type", "bridge")
            self._bridge_made = True
            ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for index, name in enumerate(self.names):
                self._add_host(name, str(self.subnet.network_address + 11 + index))
        except BaseException:
            self.close()
            raise
        return self

    def _add_host(self, name: str, address: str) -> None:
        assert self.subnet is not None
        netns = f"ac-{self.tag}-{name}"
        link = f"ac{self.tag}{name}"[:15]
        home = Path(tempfile.mkdtemp(prefix=f"agentchord-host-{name}-"))
        self.hosts[name] = Host(name, netns, address, link, home)
        ip("netns", "add", netns)
        ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", link, "master", self.bridge)
        ip("link", "set", link, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill what still runs in the hosts (processes this test started there), delete the
        namespaces (their veth pairs go with them), the bridge and the hosts' directories."""
        for host in self.hosts.values():
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", host.link)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", host.netns)
            shutil.rmtree(host.home, ignore_errors=True)
        if self._bridge_made:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", self.bridge)
            self._bridge_made = False

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostWorker(WorkerProcess):
    """``celery -A proj worker`` on a host: the same command, environment (the settings as
    ``AGENTCHORD_*`` variables) and readiness check (a control ping from the root namespace,
    through the same Redis) as :class:`WorkerProcess`, run inside the host's namespace.

    Its Celery node name is ``<host>@<machine>``: a step's recorded ``worker`` names its host."""

    def __init__(
        self, host: Host, queues: list[str], settings: Settings, concurrency: int = 2, log_path: Path | None = None
    ) -> None:
        super().__init__(queues, host.name, settings, concurrency=concurrency, log_path=log_path)
        self.host = host

    def command(self) -> list[str]:
        return self.host.command(super().command())


def host_of(worker: str | None) -> str:
    """The host a recorded ``worker`` (``h2@machine``) ran on."""
    return (worker or "").partition("@")[0]
