"""The container files and the command they run, without Docker.

There is no Docker engine or cluster here, so every file is parsed and its references checked:
compose services, volumes and dependencies; Kubernetes objects, selectors, claims, config maps
and ``$(VAR)`` references; every command line they (and the Dockerfile) run is parsed by the
real ``p2pnode`` argument parser; ports agree between commands, health checks, services and
EXPOSE.  Then ``p2pnode meter-node`` itself: houses, files, clock, timing, health probe.  The
same commands run as processes in tests/test_netns_swarm.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import io
import json
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from ledger import CreditVoucher, unseal
from ledger.store import LedgerStore
from p2pnode.cli import build_parser, main
from simulator.cli import meternode
from p2pnode.config import NetworkConfig, load_config
from p2pnode.errors import ConfigError
from p2pnode.meter import CsvReplayMeter
from p2pnode.peer import PATH, PeerServer
from tests import netnskit
from tests.dhtkit import run as strict_run
from tests.netnskit import DOCKER, ROOT

EPOCH = "1782907200"
K8S = DOCKER / "k8s"
SCENARIO = """\
name = "six-meters"
seed = 7
meters = 6
feeder = "none"
[time]
start_date = 2023-06-30
[households]
pv_share = 0.5
battery_share = 0.0
"""


def parse_cli(argv: list[str]):
    """``p2pnode`` parses ``argv`` (without the program name) or the test fails with why."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:        # --help
                return None
            pytest.fail(f"p2pnode rejects {argv}: {err.getvalue().strip()}")


def p2pnode_calls(argv: list[str]) -> list[list[str]]:
    """Every ``p2pnode ...`` invocation in a command (exec form, or ``sh -c`` scripts)."""
    if argv and argv[0] == "p2pnode":
        return [argv[1:]]
    if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]):
        lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words, calls = list(lexer), []
        for at, word in enumerate(words):
            if word == "p2pnode":
                end = next((i for i in range(at + 1, len(words))
                            if set(words[i]) <= set(";&|(){}")), len(words))
                calls.append(words[at + 1:end])
        return calls
    return []


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing in {argv}"
    return argv[argv.index(name) + 1]


# -- Dockerfile and .dockerignore -------------------------------------------------------------

def instructions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for word, args in netnskit.dockerfile():
        out.setdefault(word, []).append(args)
    return out


def test_dockerfile_base_user_entrypoint_and_health_check():
    steps = netnskit.dockerfile()
    found = instructions()
    assert found["FROM"] == ["${BASE_IMAGE}"] and steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert 'EXTRAS="sim"' in found["ARG"]       # the one line that picks the install's extras
    users = found["USER"]
    assert users[-1] not in ("root", "0") and users[-1] in " ".join(found["RUN"])  # created
    last_user = max(i for i, (w, _) in enumerate(steps) if w == "USER")
    assert all(w != "RUN" for w, _ in steps[last_user:]), "RUN after USER would run as the user"
    assert netnskit.image_entrypoint() == ["p2pnode"]
    parse_cli(json.loads(found["CMD"][-1]))
    check = netnskit.dockerfile()
    health = dict(check)["HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3:])
    assert command[:2] == ["p2pnode", "health"]
    parse_cli(command[1:])
    assert set(found["EXPOSE"][0].split()) == {"7400/udp", "7401/tcp"}


def test_no_step_runs_in_a_directory_an_earlier_step_removed():
    removed, workdir = [], "/"
    for word, args in netnskit.dockerfile():
        if word == "WORKDIR":
            workdir = args
        elif word == "RUN":
            assert not any(workdir == r or workdir.startswith(r + "/") for r in removed), \
                f"RUN in {workdir}, removed by an earlier step"
            removed += re.findall(r"rm -rf (\S+)", args)
            assert "cd " not in args, "use WORKDIR, not cd, so this test sees the directory"


def test_the_image_gets_every_package_and_the_example_scenarios():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"          # an allowlist: everything else stays out of the image
    needed = {*packages, "pyproject.toml", project["project"]["readme"], "examples"}
    assert needed <= allowed, f"the build context lacks {needed - allowed}"
    assert all((ROOT / name).exists() for name in allowed)
    assert "docker/constraints.txt" in allowed
    run = " ".join(instructions()["RUN"])
    assert 'pip install --constraint /tmp/src/docker/constraints.txt "/tmp/src${EXTRAS:+[$EXTRAS]}"' \
        in run and "cp -r /tmp/src/examples /opt/p2p-energy/examples" in run
    assert instructions()["COPY"] == [". /tmp/src"]


def test_the_constraints_pin_every_dependency_within_its_range():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and canonicalize_name(name) not in pins, line
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"docker/constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {text}"


# -- compose ----------------------------------------------------------------------------------

NODE_SERVICES = ("bootstrap", "meter")


def compose_env() -> dict[str, str]:
    return {}      # every variable has a default: `down` and `logs` need none


def test_compose_services_volumes_and_dependencies():
    compose = netnskit.compose_file()
    services = compose["services"]
    assert set(services) == {"bootstrap", "meter", "audit"}
    build = services["bootstrap"]["build"]          # one build, its image used by all
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert build["network"] == "host" and set(build["args"]) == {"BASE_IMAGE", "EXTRAS"}
    assert netnskit.interpolate(build["args"]["BASE_IMAGE"], {}) == "python:3.11-slim"
    assert netnskit.interpolate(build["args"]["EXTRAS"], {}) == "sim"      # as the Dockerfile
    for name, spec in services.items():
        assert spec["image"] == "p2p-energy:latest"
        if name != "bootstrap":
            assert "build" not in spec and spec["pull_policy"] == "never"
        for mount in spec["volumes"]:
            volume, target = mount.split(":")[:2]
            assert volume in compose["volumes"] and target == "/swarm"
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services and dependency != name
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")
            if condition["condition"] == "service_healthy":
                assert not services[dependency].get("healthcheck", {}).get("disable")
            else:   # only a bounded run completes
                assert "--intervals" in netnskit.service_argv(dependency, compose_env())
    assert services["meter"]["depends_on"] == {"bootstrap": {"condition": "service_healthy"}}
    assert set(services["audit"]["depends_on"]) == set(NODE_SERVICES)


def test_compose_commands_are_real_p2pnode_commands():
    for service in ("bootstrap", "meter", "audit"):
        calls = p2pnode_calls(netnskit.service_argv(service, compose_env()))
        assert calls, f"{service} runs no p2pnode command"
        for call in calls:
            parse_cli(call)
    health = netnskit.compose_file()["services"]["bootstrap"]["healthcheck"]["test"]
    assert health[0] == "CMD"
    parse_cli(health[2:])


def test_compose_nodes_agree_on_ports_clock_and_directory():
    compose = netnskit.compose_file()
    argv = {s: netnskit.service_argv(s, compose_env())[1:] for s in NODE_SERVICES}
    for service in NODE_SERVICES:
        args = parse_cli(argv[service])
        assert args.command == "meter-node" and args.host == "0.0.0.0"
        assert (args.dht_port, args.peer_port) == (7400, 7401)
        assert str(args.dir) == "/swarm" and args.epoch is None
        assert str(args.epoch_file) == "/swarm/epoch" and args.epoch_delay > 0
        assert args.intervals and args.speed and args.start
    clock = ("--speed", "--start", "--epoch-file", "--epoch-delay", "--intervals", "--scenario")
    assert [option(argv["meter"], o) for o in clock] == [option(argv["bootstrap"], o) for o in clock]
    host, port = option(argv["meter"], "--bootstrap").split(":")
    assert compose["services"][host]["hostname"] == host == "bootstrap"
    assert port == option(argv["bootstrap"], "--dht-port")
    assert option(argv["bootstrap"], "--house") == "0"
    assert option(argv["meter"], "--house") == "claim" and option(argv["meter"], "--first-house") == "1"
    health = compose["services"]["bootstrap"]["healthcheck"]["test"]
    assert option(health, "--peer") == f"127.0.0.1:{option(argv['bootstrap'], '--peer-port')}"
    image_health = dict(netnskit.dockerfile())["HEALTHCHECK"]
    assert f"127.0.0.1:{option(argv['meter'], '--peer-port')}" in image_health
    scenario = option(argv["bootstrap"], "--scenario")
    assert scenario.startswith("/opt/p2p-energy/examples/")
    assert (ROOT / "examples" / scenario.rsplit("/", 1)[1]).is_file()


def test_the_audit_reads_the_ledgers_where_meter_node_writes_them():
    script = netnskit.service_argv("audit", {})[2]
    verify = p2pnode_calls(netnskit.service_argv("audit", {}))[-1]
    assert verify[:2] == ["ledger", "verify"]
    assert fnmatch.fnmatch("/swarm/house-0007/node.db", verify[2])
    assert "finished.json" in script


def run_audit(swarm_dir, wait_s: int) -> tuple[subprocess.CompletedProcess, float]:
    """The compose audit's script, run by /bin/sh on ``swarm_dir`` (as the container's /swarm)."""
    script = netnskit.service_argv("audit", {"SWARM_AUDIT_WAIT": str(wait_s)})[2]
    script = script.replace("/swarm/", f"{swarm_dir}/").replace(
        "exec p2pnode ", f"exec {Path(sys.executable).with_name('p2pnode')} ")
    began = time.monotonic()
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - began


def test_the_audit_waits_for_every_claimed_house_that_compose_did_not(tmp_path):
    """Compose starts the audit when the first replica of ``meter`` exits (with --scale,
    service_completed_successfully inspects one container): a meter that finishes a moment
    later made the smoke fail with "the node did not finish".  The audit waits for every
    claimed house, checks that it exited 0, then verifies the ledgers."""
    for house in range(3):
        meternode.pick_house(str(house), 3, tmp_path / "claims", f"node-{house}")
        (tmp_path / f"house-{house:04d}").mkdir()
        LedgerStore(tmp_path / f"house-{house:04d}" / "node.db").close()

    def finish(house: int, code: int) -> None:
        (tmp_path / f"house-{house:04d}" / "finished.json").write_text(
            json.dumps({"house": house, "exit": code, "at": time.time()}) + "\n")

    finish(0, 0)
    finish(1, 0)
    done, took = run_audit(tmp_path, 2)           # house 2 never finishes
    assert done.returncode == 1 and 1 < took < 10      # whole seconds: 1 to 3 s
    assert done.stdout == f"{tmp_path}/house-0002: the node did not finish\n"

    late = threading.Timer(1.5, finish, (2, 0))    # house 2 finishes while the audit waits
    late.start()
    try:
        done, took = run_audit(tmp_path, 30)
    finally:
        late.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert 1 < took < 30 and ": valid" in done.stdout + done.stderr

    finish(1, 1)                                   # a node that failed is not a finished one
    done, _ = run_audit(tmp_path, 30)
    assert done.returncode == 1
    assert done.stdout.startswith(f"{tmp_path}/house-0001: the node failed: {{\"house\": 1, \"exit\": 1,")


def test_compose_needs_no_variable_so_down_and_logs_work():
    """Compose interpolates every service for every command: a required variable would make
    `docker compose down` and `logs` fail; the clock is set when the swarm starts instead."""
    text = (DOCKER / "compose.yaml").read_text()
    assert ":?" not in text and "SWARM_EPOCH" not in text
    for service in ("bootstrap", "meter", "audit"):
        netnskit.service_argv(service, {})


def test_the_first_node_sets_the_shared_epoch_once(tmp_path):
    path = tmp_path / "epoch"
    before = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        epochs = set(pool.map(lambda _: meternode.shared_epoch(path, 30.0), range(16)))
    epoch = epochs.pop()   # written to the millisecond
    assert not epochs and before + 30 - 0.001 <= epoch <= time.time() + 30
    assert [p.name for p in tmp_path.iterdir()] == ["epoch"]        # no temporary left
    path.write_text("soon\n")
    with pytest.raises(ConfigError, match=r"--epoch-file .*epoch: 'soon' is not a unix time"):
        meternode.shared_epoch(path, 30.0)


def test_interpolation_follows_compose():
    env = {"A": "1", "E": ""}
    assert netnskit.interpolate("$A ${A} ${B:-x} ${E:-y} ${E-z} $$A", env) == "1 1 x y  $A"
    with pytest.raises(KeyError, match="need B"):
        netnskit.interpolate("${B:?need B}", env)


# -- Kubernetes -------------------------------------------------------------------------------

def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def pod_specs() -> dict[str, dict]:
    specs = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, doc in by_kind(kind).items():
            specs[name] = doc["spec"]["template"]
    return specs


def container_env(spec: dict, container: dict) -> dict[str, str]:
    maps = by_kind("ConfigMap")
    env = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    readme = (DOCKER / "README.md").read_text()
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        if ref is None:
            env[item["name"]] = item["value"]
        elif ref["name"] == "swarm-clock":       # made at deploy time, as the README says
            assert f"create configmap swarm-clock --from-literal={ref['key']}=" in readme
            env[item["name"]] = EPOCH
        else:
            env[item["name"]] = maps[ref["name"]]["data"][ref["key"]]
    return env


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes ``$(VAR)`` expansion; every reference must be defined."""
    def one(match):
        assert match.group(1) in env, f"$({match.group(1)}) is not defined in the container"
        return env[match.group(1)]
    return [re.sub(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, w) for w in words]


def test_kustomization_lists_every_manifest_and_they_parse():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml")
                                    if p.name != "kustomization.yaml")
    kinds = sorted(d["kind"] for d in manifests())
    assert kinds == sorted(["ConfigMap", "PersistentVolumeClaim", "Service", "Deployment",
                            "Service", "StatefulSet", "Job"])


def test_k8s_selectors_services_claims_and_config_maps_refer_to_each_other():
    services, claims = by_kind("Service"), by_kind("PersistentVolumeClaim")
    labels = [t["metadata"]["labels"] for t in pod_specs().values()]
    for kind in ("Deployment", "StatefulSet"):
        for doc in by_kind(kind).values():
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    for service in services.values():
        assert service["spec"]["clusterIP"] == "None"      # names resolve to the pods
        assert any(service["spec"]["selector"].items() <= l.items() for l in labels)
    meters = by_kind("StatefulSet")["meter"]["spec"]
    assert meters["serviceName"] in services and meters["podManagementPolicy"] == "Parallel"
    assert {"ReadWriteMany"} == set(claims["swarm"]["spec"]["accessModes"])
    for template in pod_specs().values():
        spec = template["spec"]
        assert spec["securityContext"]["runAsUser"] != 0
        for volume in spec["volumes"]:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"] == netnskit.compose_file()["services"]["meter"]["image"]
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            assert set(mounts) <= {v["name"] for v in spec["volumes"]}
            container_env(spec, container)       # every config map and key exists


def k8s_calls() -> dict[str, list[list[str]]]:
    """Every p2pnode invocation of every container and probe, ``$(VAR)`` expanded."""
    calls = {}
    for name, template in pod_specs().items():
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = container_env(spec, container)
            words = container.get("command", netnskit.image_entrypoint()) + container.get("args", [])
            key = f"{name}/{container['name']}"
            calls[key] = [expand(c, env) for c in p2pnode_calls(expand(words, env))]
            probe = container.get("readinessProbe", {}).get("exec", {}).get("command")
            if probe:
                calls[f"{key}/ready"] = p2pnode_calls(probe)
    return calls


def test_k8s_commands_are_real_p2pnode_commands():
    calls = k8s_calls()
    assert set(calls) == {"bootstrap/node", "bootstrap/node/ready", "meter/wait-for-bootstrap",
                          "meter/node", "meter/node/ready", "audit/audit"}
    for key, invocations in calls.items():
        assert invocations, f"{key} runs no p2pnode command"
        for argv in invocations:
            parse_cli(argv)


def test_k8s_nodes_agree_on_houses_ports_and_the_audit_count():
    calls = k8s_calls()
    boot, meter = calls["bootstrap/node"][0], calls["meter/node"][0]
    assert option(boot, "--house") == "0" and "--stay" in boot and "--stay" in meter
    assert option(meter, "--house") == "ordinal" and option(meter, "--first-house") == "1"
    host, port = option(meter, "--bootstrap").split(":")
    service = by_kind("Service")[host]
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == \
        {(int(option(boot, "--dht-port")), "UDP"), (int(option(boot, "--peer-port")), "TCP")}
    assert port == option(boot, "--dht-port")
    deployment = by_kind("Deployment")["bootstrap"]["spec"]["template"]["spec"]
    assert deployment["hostname"] == "bootstrap"        # house 0's claim survives new pods
    assert calls["meter/wait-for-bootstrap"][0] == ["health", "--peer", f"bootstrap:{option(boot, '--peer-port')}"]
    for key in ("bootstrap/node/ready", "meter/node/ready"):
        assert calls[key][0] == ["health", "--peer", f"127.0.0.1:{option(boot, '--peer-port')}"]
    clock = ("--speed", "--start", "--epoch", "--intervals", "--scenario")
    assert [option(meter, o) for o in clock] == [option(boot, o) for o in clock]
    job = by_kind("Job")["audit"]["spec"]["template"]["spec"]["containers"][0]
    nodes = {e["name"]: e["value"] for e in job["env"]}["NODES"]
    assert int(nodes) == by_kind("StatefulSet")["meter"]["spec"]["replicas"] + 1
    assert fnmatch.fnmatch("/swarm/house-0007/node.db", calls["audit/audit"][0][2])


def test_readme_gives_the_commands():
    text = (DOCKER / "README.md").read_text()
    for needed in ("docker compose -f docker/compose.yaml up --build --scale meter=20",
                   "SWARM_EPOCH=", "kubectl apply -k docker/k8s",
                   "kubectl create configmap swarm-clock", "logs job/audit"):
        assert needed in text, f"docker/README.md lacks {needed!r}"


# -- p2pnode meter-node -----------------------------------------------------------------------

def test_claims_give_each_name_one_house_and_keep_it(tmp_path):
    claims = tmp_path / "claims"
    assert meternode.pick_house("0", 6, claims, "bootstrap") == 0
    got = [meternode.pick_house("claim", 6, claims, f"c{i}", first=1) for i in range(5)]
    assert got == [1, 2, 3, 4, 5]
    assert meternode.pick_house("claim", 6, claims, "c2", first=1) == 3    # a restart
    assert meternode.pick_house("0", 6, claims, "bootstrap") == 0
    with pytest.raises(ConfigError, match=r"house 0 is already run by 'bootstrap'"):
        meternode.pick_house("0", 6, claims, "intruder")
    with pytest.raises(ConfigError, match=r"houses 1\.\.5 are all claimed"):
        meternode.pick_house("claim", 6, claims, "c9", first=1)
    with pytest.raises(ConfigError, match="house 6 does not exist"):
        meternode.pick_house("6", 6, claims, "x")
    with pytest.raises(ConfigError, match="'claim' or 'ordinal'"):
        meternode.pick_house("first", 6, claims, "x")


def test_ordinal_houses_come_from_the_pod_name(tmp_path):
    claims = tmp_path / "claims"
    assert meternode.pick_house("ordinal", 30, claims, "meter-4", first=1) == 5
    assert meternode.pick_house("ordinal", 30, claims, "meter-4", first=1) == 5
    with pytest.raises(ConfigError, match="does not end in -N"):
        meternode.pick_house("ordinal", 30, claims, "meter", first=1)
    with pytest.raises(ConfigError, match="house 30 does not exist"):
        meternode.pick_house("ordinal", 30, claims, "meter-29", first=1)


def test_concurrent_claims_never_share_a_house(tmp_path):
    claims = tmp_path / "claims"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        houses = list(pool.map(lambda i: meternode.pick_house("claim", 40, claims, f"n{i}"),
                               range(32)))
    assert sorted(houses) == list(range(32))


def test_the_replay_meter_is_idle_before_the_start_and_the_run_ends_with_interval_n(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("interval_start_s,generation_wh,consumption_wh\n1000800,5,0\n1001700,7,1\n")
    meter = meternode.ReplayMeter(CsvReplayMeter(csv, 900), start_s=1001700)
    assert meter.read(1000800, 900).net_wh == 0        # ends at the start: before the run
    assert meter.read(1001700, 900).net_wh == 6
    assert meternode.replay_until(1001700, 900, 4) == 1001700 + 4 * 900 + 1
    assert meternode.replay_until(1001700 + 60, 900, 1) == 1001700 + 900 + 1
    assert meternode.replay_until(1001700, 900, None) is None


def test_timing_scales_with_speed_and_too_fast_is_refused():
    assert (meternode.replay_timing(900, 1).buy_delay_s, meternode.replay_timing(900, 1).window_s) \
        == (5.0, 300.0)
    fast = meternode.replay_timing(900, 180)
    assert (fast.buy_delay_s, fast.window_s) == (180.0, 720.0)
    with pytest.raises(ConfigError, match=r"--speed 200: too fast .* \(at most --speed 180\)"):
        meternode.replay_timing(900, 200)


@pytest.fixture(scope="module")
def scenario_and_profiles(tmp_path_factory):
    from simulator import build_profiles, load_scenario

    path = tmp_path_factory.mktemp("scenario") / "six.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    return path, scenario, build_profiles(scenario.profile_spec())


def test_prepare_writes_the_house_as_the_swarm_runner_sees_it(tmp_path, scenario_and_profiles):
    from simulator.swarm import node_config

    _, scenario, profiles = scenario_and_profiles
    network = NetworkConfig(bootstrap=("127.0.0.1:7400",))
    path = meternode.prepare(scenario, 4, tmp_path, tmp_path / "issuer.key", network, 180,
                             profiles)
    house = tmp_path / "house-0004"
    assert path == house / "node.toml"
    config = load_config(path)
    expected = node_config(scenario, 4, tmp_path)
    for name in ("feeder", "location", "interval_s", "detection", "tariffs", "selection"):
        assert getattr(config, name) == getattr(expected, name), name
    assert (config.ledger, config.key_file) == (house / "node.db", house / "node.key")
    assert config.network == network and config.timing == meternode.replay_timing(900, 180)
    assert stat.S_IMODE((house / "node.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "issuer.key").stat().st_mode) == 0o600
    meter = CsvReplayMeter(config.meter.path, 900)
    starts = profiles.interval_start.astype("datetime64[s]").astype(np.int64)
    readings = [meter.read(int(s), 900) for s in starts]
    assert [r.generation_wh for r in readings] == np.floor(profiles.surplus_wh[4]).astype(int).tolist()
    assert [r.consumption_wh for r in readings] == np.floor(profiles.deficit_wh[4]).astype(int).tolist()
    assert sum(r.generation_wh for r in readings) > 0      # a PV house: it has something to sell
    voucher = unseal((house / "voucher.bin").read_bytes(), CreditVoucher).message
    assert voucher.amount_micro == 200_000_000
    assert config.credit.trusted_issuers == (voucher.issuer.hex(),)


def test_prepare_again_keeps_key_and_voucher_and_refuses_a_foreign_voucher(
        tmp_path, scenario_and_profiles):
    _, scenario, profiles = scenario_and_profiles
    issuer = tmp_path / "issuer.key"
    meternode.prepare(scenario, 1, tmp_path, issuer, NetworkConfig(), 1, profiles)
    house = tmp_path / "house-0001"
    kept = {n: (house / n).read_bytes() for n in ("node.key", "voucher.bin")}
    meternode.prepare(scenario, 1, tmp_path, issuer, NetworkConfig(), 1, profiles)
    assert {n: (house / n).read_bytes() for n in kept} == kept
    with pytest.raises(ConfigError, match="issued by another issuer key"):
        meternode.prepare(scenario, 1, tmp_path, tmp_path / "other.key", NetworkConfig(), 1,
                          profiles)


def test_concurrent_nodes_share_one_issuer(tmp_path):
    path = tmp_path / "issuer.key"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: meternode._issuer_key(path).public, range(16)))
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["issuer.key"]    # no temporary left


def test_prepare_only_writes_what_p2pnode_run_loads(tmp_path, scenario_and_profiles, capsys):
    scenario_path, _, _ = scenario_and_profiles
    code = main(["meter-node", "--scenario", str(scenario_path), "--house", "2", "--dir",
                 str(tmp_path), "--speed", "180", "--prepare-only"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"house": 2, "config": str(tmp_path / "house-0002" / "node.toml")}
    config = load_config(printed["config"])
    assert config.meter.path.is_file() and config.timing.window_s == 720.0


@pytest.mark.parametrize("extra, message", [
    (["--host", "0.0.0.0", "--prepare-only"], "needs a fixed --peer-port"),
    (["--speed", "0", "--prepare-only"], "--speed 0.0: must be in (0, 100000]"),
    (["--start", "2023-07-02T11:00Z"], "outside the scenario's days"),
    (["--start", "noon"], "not an ISO 8601 time"),
    ([], "--start is required"),
    (["--start", "2023-06-30T11:00Z", "--speed", "500"], "too fast"),
    (["--start", "2023-06-30T11:00Z", "--epoch", "1", "--epoch-file", "e"], "give one"),
])
def test_meter_node_errors_name_the_flag(tmp_path, scenario_and_profiles, capsys, extra, message):
    scenario_path, _, _ = scenario_and_profiles
    code = main(["meter-node", "--scenario", str(scenario_path), "--house", "1", "--dir",
                 str(tmp_path), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_health_probe_tells_a_serving_node_from_a_dead_port():
    assert meternode.HEALTH_PATH == PATH

    async def probe():
        server = PeerServer(lambda body: None)
        await server.start("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        try:
            alive = await loop.run_in_executor(
                None, main, ["health", "--peer", f"127.0.0.1:{server.port}"])
        finally:
            await server.stop()
        dead = await loop.run_in_executor(
            None, main, ["health", "--peer", f"127.0.0.1:{server.port}", "--timeout", "1"])
        return alive, dead

    assert strict_run(probe(), timeout_s=60) == (0, 1)


def test_a_node_started_after_its_run_stays_until_sigterm(tmp_path, scenario_and_profiles):
    """What a StatefulSet pod restarted after the run does: no trading, no exit, no restart loop."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    scenario_path, _, _ = scenario_and_profiles
    p2pnode = str(Path(sys.executable).with_name("p2pnode"))
    argv = [p2pnode, "meter-node", "--scenario", str(scenario_path), "--house", "3", "--dir",
            str(tmp_path), "--speed", "180", "--start", "2023-06-30T11:00Z", "--epoch", "1000",
            "--intervals", "4", "--stay"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        finished = json.loads(proc.stdout.readline())
        assert finished == {"finished": True, "reason": "the run's last interval has passed"}
        assert json.loads(proc.stdout.readline()) == {"staying": True, "until": "SIGTERM"}
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    marker = json.loads((tmp_path / "house-0003" / "finished.json").read_text())
    assert (marker["house"], marker["exit"]) == (3, 0)
    assert not (tmp_path / "house-0003" / "node.db").exists()     # it never traded
