"""A private network of Linux network namespaces for swarm tests (root only).

:class:`Lab` builds, and always removes again:

* a *switch* namespace holding a bridge (no address of its own),
* one namespace per host, joined to the bridge by a veth pair whose host end is ``eth0`` with an
  address of :data:`SUBNET` ``.0/24``.  The subnet exists only on that bridge and no namespace
  has a default route, so nothing a test sends can leave it;
* ``/etc/netns/<namespace>/hosts`` naming every host (``ip netns exec`` mounts it over
  ``/etc/hosts``), and an empty ``resolv.conf`` beside it, so commands find each other by name as
  containers do through Docker's DNS, and never ask a real name server.

The root namespace is never changed: bridge, veths and addresses all live in the lab's own
namespaces, and deleting the namespaces deletes them.  :meth:`Lab.command` runs a command in a
host's namespace with its own hostname (a UTS namespace), like a container.

The second half reads what the containers run from ``docker/compose.yaml`` and the Dockerfile
(:func:`service_argv`, with compose's variable interpolation), so tests run those very commands.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

SUBNET = "10.231.77"          # a /24 that exists only inside a lab
FIRST_HOST = 10               # hosts get SUBNET.10, SUBNET.11, ...
NETNS_ETC = Path("/etc/netns")
ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMMAND_TIMEOUT_S = 10.0
ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "anycast", "unreachable",
               "blackhole", "prohibit", "throw", "nat")


class LabError(RuntimeError):
    """The lab could not be built or torn down (the message carries the failing command)."""


def unavailable() -> str | None:
    """Why no lab can be built here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"p2pprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if _subnet_in_use():
        return f"{SUBNET}.0/24 is already routed on this machine; the lab needs it private"
    return None


def _subnet_in_use() -> bool:
    """Whether the root namespace routes (or owns an address in) the lab's subnet."""
    lab = ipaddress.ip_network(f"{SUBNET}.0/24")
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    for line in routes.splitlines():
        words = line.split()
        if not words:
            continue
        destination = words[1] if words[0] in ROUTE_TYPES and len(words) > 1 else words[0]
        if destination == "default":
            continue
        try:
            if ipaddress.ip_network(destination, strict=False).overlaps(lab):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True)
class Host:
    name: str          # its hostname, and the name the other hosts resolve
    netns: str
    address: str


class Lab:
    """``with Lab(["bootstrap", "meter-1", ...]) as lab:`` -- see the module docstring."""

    def __init__(self, names: list[str]):
        if not 1 <= len(names) <= 200 or len(set(names)) != len(names):
            raise ValueError("a lab has 1..200 hosts with distinct names")
        tag = f"p2pt{uuid.uuid4().hex[:6]}"
        self.switch = f"{tag}-sw"
        self.hosts = {name: Host(name, f"{tag}-h{i}", f"{SUBNET}.{FIRST_HOST + i}")
                      for i, name in enumerate(names)}
        self._made: list[str] = []

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.teardown()

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def command(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run in host ``name``'s namespace with ``name`` as its hostname."""
        host = self.hosts[name]
        return ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', host.name, *argv]

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        self._add_netns(self.switch)
        self._ip("-n", self.switch, "link", "set", "lo", "up")
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{h.address} {h.name}\n" for h in self.hosts.values())
        for i, host in enumerate(self.hosts.values()):
            self._add_netns(host.netns)
            port = f"h{i}"
            self._ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name",
                     "eth0", "netns", host.netns)
            self._ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            self._ip("-n", host.netns, "link", "set", "lo", "up")
            self._ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            self._ip("-n", host.netns, "link", "set", "eth0", "up")
            etc = NETNS_ETC / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
            (etc / "resolv.conf").write_text("# no name server: names come from hosts\n")

    def _add_netns(self, name: str) -> None:
        self._ip("netns", "add", name)
        self._made.append(name)

    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        if done.returncode != 0:
            raise LabError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")

    # -- tearing down -----------------------------------------------------------------------
    def teardown(self) -> None:
        """Kill what still runs in the lab, delete its namespaces and files; raise if any is left."""
        for netns in reversed(self._made):
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        left = set(self._made) & set(_netns_names())
        self._made = []
        try:
            NETNS_ETC.rmdir()           # only when no other namespace keeps files there
        except OSError:
            pass
        if left:
            raise LabError(f"network namespaces left behind: {sorted(left)}")


def _netns_names() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


# -- what the containers run --------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``; an error raises :class:`KeyError`."""
    def replace(match: re.Match) -> str:
        escaped, name, operator, word, bare = match.groups()
        if escaped:
            return "$"
        name = name or bare
        value = env.get(name)
        empty_counts = operator is not None and operator.startswith(":")
        missing = value is None or (empty_counts and value == "")
        if operator and operator.endswith("?") and missing:
            raise KeyError(f"${{{name}}}: {word}")
        if operator and operator.endswith("-") and missing:
            return word
        return value or ""
    return _VARIABLE.sub(replace, text)


def compose_file() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    out, pending = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") \
            else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def image_entrypoint() -> list[str]:
    return json.loads(dict(dockerfile())["ENTRYPOINT"])


def service_argv(service: str, env: dict[str, str]) -> list[str]:
    """The full command line a compose service's container runs (entrypoint + command)."""
    spec = compose_file()["services"][service]
    entry = spec.get("entrypoint", image_entrypoint())
    command = spec.get("command", [])
    return [interpolate(word, env) for word in [*entry, *command]]
