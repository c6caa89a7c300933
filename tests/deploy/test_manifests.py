"""Static checks of what ``deploy/`` ships: haproxy.cfg, docker-compose.yml, Dockerfile, k8s/.

No Docker engine or Kubernetes cluster runs here, so these read the files: every health check
points at ``/health``, Redis persists with AOF, nodes have distinct ids and share one store.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local_cluster import BEGIN_SERVERS, END_SERVERS, render_haproxy_config
from tests.deploy.support import require_haproxy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
PORT = 31337


def seconds(value: str) -> float:
    """An HAProxy duration (``10s``, ``1h``, ``500ms``; bare numbers are ms) in seconds."""
    match = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value)
    assert match, value
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1e-3}
    return int(match[1]) * unit[match[2]]


def haproxy_lines() -> list[str]:
    lines = []
    for line in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            lines.append(" ".join(text.split()))
    return lines


def test_haproxy_config_balances_websockets() -> None:
    lines = haproxy_lines()
    assert "mode http" in lines
    assert "balance leastconn" in lines
    assert "option httpchk GET /health" in lines
    assert "http-check expect status 200" in lines
    timeouts = {
        line.split()[1]: seconds(line.split()[2]) for line in lines if line.startswith("timeout ")
    }
    assert timeouts["tunnel"] >= 3600  # WebSockets live for hours
    assert 10 <= timeouts["client"] <= 300
    assert 10 <= timeouts["server"] <= 300
    assert timeouts["connect"] <= 10
    # Any node serves any client: no stickiness of any kind.
    assert not [line for line in lines if line.split()[0] in ("cookie", "stick", "stick-table")]
    assert not [line for line in lines if line.startswith("balance") and "leastconn" not in line]
    servers = [line for line in lines if line.startswith("server ")]
    assert [line.split()[1:3] for line in servers] == [
        [f"node{i}", f"node{i}:{PORT}"] for i in (1, 2, 3)
    ]
    assert "default-server check inter 2s fastinter 500ms downinter 2s fall 2 rise 2" in lines


def test_shipped_haproxy_config_is_valid() -> None:
    """As docker-compose runs it (node1..3 do not resolve here: they start down, not an error)."""
    result = subprocess.run(
        [require_haproxy(), "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_render_replaces_only_the_server_block() -> None:
    template = (DEPLOY / "haproxy.cfg").read_text()
    rendered = render_haproxy_config([("node1", "127.0.0.1:1001"), ("node2", "127.0.0.1:1002")])
    head, _, rest = template.partition(BEGIN_SERVERS)
    _, _, tail = rest.partition(END_SERVERS)
    assert rendered.startswith(head + BEGIN_SERVERS + "\n")
    assert rendered.endswith(END_SERVERS + tail)
    assert (
        "    server node1 127.0.0.1:1001\n    server node2 127.0.0.1:1002\n    " + END_SERVERS
        in rendered
    )
    with pytest.raises(ValueError):
        render_haproxy_config([], template="defaults\n    mode http\n")


MANIFESTS = [DEPLOY / "docker-compose.yml", *sorted(K8S.glob("*.yaml"))]
# Plain scalars that YAML 1.1 (PyYAML, and Kubernetes' go-yaml v2) and YAML 1.2 (Compose's go-yaml
# v3) read differently: 1.1 booleans, base-60 numbers, leading-zero octals, digits with `_`.
YAML_11_ONLY = re.compile(
    r"y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF"
    r"|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"
    r"|[-+]?0[0-7_]+"
    r"|[-+]?[0-9][0-9]*_[0-9_]*(\.[0-9_]*)?"
)


def plain_scalars(node: yaml.Node) -> Iterator[str]:
    if isinstance(node, yaml.ScalarNode):
        if node.style is None:
            yield node.value
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from plain_scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from plain_scalars(key)
            yield from plain_scalars(value)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_reads_the_same_in_yaml_1_1_and_1_2(path: Path) -> None:
    """PyYAML reads YAML 1.1: the manifests avoid what 1.2 readers (Compose) would read otherwise,
    so what these tests check is what Docker and Kubernetes get (quote `"yes"`, `"0644"`)."""
    ambiguous = [
        value
        for node in yaml.compose_all(path.read_text(), Loader=yaml.SafeLoader)
        if node is not None
        for value in plain_scalars(node)
        if YAML_11_ONLY.fullmatch(value)
    ]
    assert ambiguous == []


def test_yaml_1_1_only_scalars_are_found() -> None:
    text = "a: yes\nb: [off, '0644', 0644, 1:30, \"no\", 1_000, 10, 0, 0.5, 0.0.0.0]\n"
    (node,) = yaml.compose_all(text, Loader=yaml.SafeLoader)
    found = [value for value in plain_scalars(node) if YAML_11_ONLY.fullmatch(value)]
    assert found == ["yes", "off", "0644", "1:30", "1_000"]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_redis_persists_every_write() -> None:
    redis = compose()["services"]["redis"]
    command = [interpolate(str(arg)) for arg in redis["command"]]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose()["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_compose_nodes() -> None:
    services = compose()["services"]
    nodes = {name: services[name] for name in ("node1", "node2", "node3")}
    ids = set()
    for name, node in nodes.items():
        env = node["environment"]
        assert env["LOGSYNC_NODE_ID"] == name
        ids.add(env["LOGSYNC_NODE_ID"])
        assert env["LOGSYNC_STORE"].startswith("redis://redis:6379/0?prefix=")
        assert env["LOGSYNC_HOST"] == "0.0.0.0"
        assert str(env["LOGSYNC_PORT"]) == str(PORT)
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        test = " ".join(node["healthcheck"]["test"])
        assert f"http://127.0.0.1:{PORT}/health" in test
        assert node["stop_signal"] == "SIGTERM"
    assert len(ids) == 3
    stores = {node["environment"]["LOGSYNC_STORE"] for node in nodes.values()}
    assert len(stores) == 1  # one shared log


def test_compose_haproxy_runs_the_shipped_config() -> None:
    haproxy = compose()["services"]["haproxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert [interpolate(port) for port in haproxy["ports"]] == [f"{PORT}:{PORT}"]
    assert set(haproxy["depends_on"]) == {"node1", "node2", "node3"}
    assert "GET /health" in " ".join(haproxy["healthcheck"]["test"])


def test_dockerfile() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # The wheel is built with the hot modules compiled (or the build fails), then installed.
    assert re.search(r"^RUN LOGSYNC_COMPILE=1 pip wheel .* \.$", dockerfile, re.M)
    assert re.search(r'^RUN wheel=.* pip install "\$wheel\[server\]"', dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["logsync", "serve"\]', dockerfile, re.M)
    assert re.search(r"^USER \d+$", dockerfile, re.M)  # numeric: k8s can check runAsNonRoot
    assert "LOGSYNC_HOST=0.0.0.0" in dockerfile
    assert f"127.0.0.1:{PORT}/health" in dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {"!logsync/", "!setup.py", "!scripts/build_backend.py"} <= set(ignore)


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue  # an empty document (a stray `---`)
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, key
            objects[key] = doc
    return objects


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    names = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == names


def test_k8s_deployment() -> None:
    objects = k8s_objects()
    deployment = objects["Deployment", "logsync"]
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    port = container["ports"][0]
    assert port["containerPort"] == PORT
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    get = container["readinessProbe"]["httpGet"]
    assert get["path"] == "/health"
    assert get["port"] in (port["name"], PORT)
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]
    # SIGTERM drains: preStop lets the endpoint removal spread first, and the grace period covers it.
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 15
    # Settings: LOGSYNC_STORE from the ConfigMap, pointing at the Redis Service.
    env_from = [source["configMapRef"]["name"] for source in container["envFrom"]]
    config = objects["ConfigMap", env_from[0]]["data"]
    # ConfigMap data is string to string: the API server refuses `31337` or `true` unquoted.
    assert all(isinstance(value, str) for value in config.values()), config
    assert config["LOGSYNC_STORE"].startswith("redis://redis:6379/")
    assert config["LOGSYNC_HOST"] == "0.0.0.0"
    assert config["LOGSYNC_PORT"] == str(PORT)
    node_id = next(env for env in container["env"] if env["name"] == "LOGSYNC_NODE_ID")
    assert node_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # unique per pod
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_service_and_ingress() -> None:
    objects = k8s_objects()
    labels = objects["Deployment", "logsync"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service", "logsync"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert "sessionAffinity" not in service  # any pod serves any client
    assert service["ports"][0]["targetPort"] == "ws"
    ingress = objects["Ingress", "logsync"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "logsync"


def test_k8s_redis_persists_with_aof() -> None:
    objects = k8s_objects()
    statefulset = objects["StatefulSet", "redis"]["spec"]
    service = objects["Service", "redis"]
    assert statefulset["serviceName"] == service["metadata"]["name"]
    assert (
        service["spec"]["selector"].items() <= statefulset["template"]["metadata"]["labels"].items()
    )
    (container,) = statefulset["template"]["spec"]["containers"]
    args = [str(arg) for arg in container["args"]]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = statefulset["volumeClaimTemplates"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert mount["mountPath"] == data_dir
    assert claim["spec"]["resources"]["requests"]["storage"]
