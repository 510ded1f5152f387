"""deploy/kubernetes: the base and both overlays, with a plan written by `safecity fleet plan
--kubernetes`, rendered by kustomize (`kubectl kustomize`) and validated offline against the
Kubernetes schemas (kubernetes-validate, strict); the configs in the plan's ConfigMaps load as
`safecity run` reads them; the probes' script answers as the kubelet expects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.fleet.configs import CONFIGMAP_BYTES, write_kubernetes
from pipeline.fleet.inventory import load_servers
from pipeline.fleet.plan import plan

from .conftest import unavailable
from .test_fleet import make_inventory, make_servers

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.32.0"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl (with kustomize) is not installed", "apt-get install kubernetes-client")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def validate(docs: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises naming the field


def planned(tmp_path: Path, overlay: str, site: str, template: dict[str, Any] | None = None) -> Path:
    """A copy of deploy/ with the example inventory's plan for ``site`` in ``overlay``."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    tpl = tmp_path / "template.yaml"
    tpl.write_text(
        yaml.safe_dump(template or yaml.safe_load((ROOT / "configs/fleet/edge-template.yaml").read_text()))
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "fleet", "plan", str(ROOT / "configs/fleet/inventory.csv"),
         "--servers", str(ROOT / "configs/fleet/servers.yaml"), "--template", str(tpl),
         "--kubernetes", str(tmp_path / "deploy/kubernetes/overlays" / overlay / "plan"), "--site", site],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp_path / "deploy/kubernetes/overlays" / overlay


def of(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def test_the_base_renders_and_validates() -> None:
    docs = kustomize(ROOT / "deploy/kubernetes/base")
    validate(docs)
    assert {d["kind"] for d in docs} == {"StatefulSet", "Deployment", "Service", "PersistentVolumeClaim",
                                         "PodDisruptionBudget"}  # fmt: skip
    (models,) = [
        d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "models"
    ]
    assert models["spec"]["accessModes"] == ["ReadOnlyMany"]  # every edge pod reads the same models


def test_a_corporation_on_gpus_one_pod_per_planned_server(tmp_path: Path) -> None:
    site = "pune-shivajinagar"
    docs = kustomize(planned(tmp_path, "corporation", site))
    validate(docs)
    (edge,) = of(docs, "StatefulSet", "edge")
    every = load_servers(ROOT / "configs/fleet/servers.yaml")
    servers = [s for s, at in zip(every.server_id, every.site, strict=True) if at == site]
    assert edge["spec"]["replicas"] == len(servers) == 2
    pod = edge["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "registry.iccc.example/safecity:0.1.0"
    assert "/etc/safecity/plan/${POD_NAME}.yaml" in container["command"][-1]
    assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "pipeline.probe", "live"]
    assert container["readinessProbe"]["exec"]["command"][-1] == "ready"
    assert container["lifecycle"]["preStop"] and pod["terminationGracePeriodSeconds"] >= 60
    assert edge["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "outbox"
    assert all(d["metadata"]["namespace"] == "safecity-pune" for d in docs if d["kind"] != "Namespace")
    assert [n["metadata"]["name"] for n in of(docs, "Namespace")] == ["safecity-pune"]
    assert [p["metadata"]["name"] for p in of(docs, "PodDisruptionBudget")] == ["edge"]
    assert edge["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert (
        len(edge["spec"]["template"]["metadata"]["annotations"]["safecity/plan"]) == 16
    )  # the plan's digest
    assert all(p["timeoutSeconds"] >= 3 for p in (container[k] for k in ("startupProbe", "livenessProbe",
                                                                         "readinessProbe")))  # fmt: skip
    # each pod's config: the N-th server of the site (a first plan), outbox on its volume, its server's key
    plan_volume = next(v for v in pod["volumes"] if v["name"] == "plan")
    maps = {m["configMap"]["name"] for m in plan_volume["projected"]["sources"]}
    data: dict[str, str] = {}
    for cm in of(docs, "ConfigMap"):
        assert cm["metadata"]["name"] in maps
        data |= cm["data"]
    assert sorted(data) == [f"edge-{n}.yaml" for n in range(len(servers))]
    for n, server in enumerate(servers):
        (tmp_path / f"edge-{n}.yaml").write_text(data[f"edge-{n}.yaml"])
        cfg = load_config(tmp_path / f"edge-{n}.yaml")
        assert cfg.edge_id == server and cfg.cameras
        assert str(cfg.sink.outbox) == "/var/lib/safecity/outbox.sqlite"
        assert str(cfg.sink.client_secret_file) == f"/etc/safecity/keys/{server}.key_secret"


def test_a_cpu_site_asks_for_no_gpu(tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "configs/fleet/edge-template.yaml").read_text()) | {"device": "cpu"}
    docs = kustomize(planned(tmp_path, "cpu-site", "pune-hadapsar", template))
    validate(docs)
    (edge,) = of(docs, "StatefulSet", "edge")
    resources = edge["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {}) and resources["requests"]["cpu"] == "2"
    (cm,) = of(docs, "ConfigMap")
    assert all(yaml.safe_load(text)["device"] == "cpu" for text in cm["data"].values())


def test_a_broken_manifest_is_caught(tmp_path: Path) -> None:
    docs = kustomize(ROOT / "deploy/kubernetes/base")
    (edge,) = of(docs, "StatefulSet", "edge")
    edge["spec"]["replicas"] = "two"
    import kubernetes_validate

    with pytest.raises(kubernetes_validate.ValidationError):
        validate([edge])


def test_a_big_site_is_split_over_configmaps_under_the_size_limit(tmp_path: Path) -> None:
    inv = make_inventory(["s"] * 30_000, [1.0] * 30_000)
    servers = make_servers([(f"s-gpu{j}", "s", 200.0) for j in range(160)])
    pods, _ = write_kubernetes(tmp_path, "s", inv, servers, plan(inv, servers), {"device": "cuda"})
    maps = sorted(tmp_path.glob("configmap-*.yaml"))
    assert pods == 160 and len(maps) > 1
    keys = []
    for path in maps:
        assert len(path.read_bytes()) < CONFIGMAP_BYTES + 64 * 1024 < 1 << 20
        keys += list(yaml.safe_load(path.read_text())["data"])
    assert sorted(keys, key=lambda k: int(k[5:-5])) == [f"edge-{n}.yaml" for n in range(160)]
    patch = yaml.safe_load((tmp_path / "statefulset.yaml").read_text())
    sources = patch["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert patch["spec"]["replicas"] == 160 and len(sources) == len(maps)


def test_kubernetes_output_needs_a_known_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "fleet", "plan", str(ROOT / "configs/fleet/inventory.csv"),
         "--servers", str(ROOT / "configs/fleet/servers.yaml"), "--kubernetes", str(tmp_path),
         "--site", "mars"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--site mars: no server of the plan is in it" in done.stderr


@pytest.mark.parametrize(
    ("status", "body", "live", "ready"),
    [
        (200, {"live": True, "ready": True, "outbox_writable": True}, 0, 0),
        (503, {"live": True, "ready": False, "outbox_writable": True}, 0, 1),  # starting: alive, not ready
        (200, {"live": True, "ready": True, "outbox_writable": False}, 0, 1),  # a full disk: out of service
        (503, {"live": False, "ready": False, "error": "detect stage failed"}, 1, 1),
    ],
)
def test_the_probe_script(
    status: int, body: dict, live: int, ready: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes ask /health with the edge's control token, read where the edge keeps it."""
    token = tmp_path / "control.token"
    token.write_text("a-token-the-edge-made-at-its-first-start\n")
    monkeypatch.setenv("SAFECITY_CONTROL_TOKEN_FILE", str(token))

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Authorization") != "Bearer a-token-the-edge-made-at-its-first-start":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = str(server.server_address[1])
    try:
        for kind, expected in (("live", live), ("ready", ready)):
            done = subprocess.run(
                [sys.executable, "-m", "pipeline.probe", kind, port], capture_output=True, timeout=30
            )
            assert done.returncode == expected, (kind, done.stderr)
    finally:
        server.shutdown()
    nobody = subprocess.run(
        [sys.executable, "-m", "pipeline.probe", "live", "1"], capture_output=True, timeout=30
    )
    assert nobody.returncode == 1


def test_a_new_plan_changes_the_pods_digest_and_removes_what_it_no_longer_needs(tmp_path: Path) -> None:
    servers = make_servers([(f"s-gpu{j}", "s", 200.0) for j in range(4)])
    inv = make_inventory(["s"] * 300, [1.0] * 300)
    write_kubernetes(tmp_path, "s", inv, servers, plan(inv, servers), {})
    first = yaml.safe_load((tmp_path / "statefulset.yaml").read_text())
    (tmp_path / "configmap-7.yaml").write_text("stale: true\n")  # a map of a bigger plan before
    more = make_inventory(["s"] * 301, [1.0] * 301)
    write_kubernetes(tmp_path, "s", more, servers, plan(more, servers), {})
    second = yaml.safe_load((tmp_path / "statefulset.yaml").read_text())
    digest = lambda p: p["spec"]["template"]["metadata"]["annotations"]["safecity/plan"]  # noqa: E731
    assert digest(first) != digest(second)  # the pods roll onto the new configs
    assert not (tmp_path / "configmap-7.yaml").exists()


def test_a_server_left_without_cameras_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from pipeline.errors import ConfigError

    servers = make_servers([(f"s-gpu{j}", "s", 200.0) for j in range(4)])
    inv = make_inventory(["s"] * 3, [1.0] * 3)  # four servers, three cameras: one idles
    with pytest.raises(ConfigError, match=r"gets 0 cameras; an edge runs 1 to 2048"):
        write_kubernetes(tmp_path / "k", "s", inv, servers, plan(inv, servers), {})
    assert not (tmp_path / "k").exists()


def test_a_shared_store_site_runs_sink_replicas_each_edge_listing_them(tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "configs/fleet/edge-template.yaml").read_text())
    replicas = [f"tcp://sink-{n}.sink-replicas:5555" for n in range(3)]
    template["sink"]["endpoint"] = replicas
    docs = kustomize(planned(tmp_path, "shared-store", "pune-shivajinagar", template))
    validate(docs)
    assert not of(docs, "Deployment", "sink") and not of(docs, "PersistentVolumeClaim", "sink-store")
    (sink,) = of(docs, "StatefulSet", "sink")
    assert sink["spec"]["replicas"] == 3 and sink["spec"]["serviceName"] == "sink-replicas"
    (headless,) = of(docs, "Service", "sink-replicas")
    assert headless["spec"]["clusterIP"] == "None"
    (container,) = sink["spec"]["template"]["spec"]["containers"]
    assert {"--db=$(SINK_STORE_URL)", "--clips=/var/lib/safecity/clips"} <= set(container["command"])
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env == {"SINK_STORE_URL": {"name": "sink-store", "key": "url"},
                   "PGPASSWORD": {"name": "sink-store", "key": "password"}}  # fmt: skip
    (clips,) = of(docs, "PersistentVolumeClaim", "sink-clips")
    assert clips["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica writes, the console reads
    assert sorted(p["metadata"]["name"] for p in of(docs, "PodDisruptionBudget")) == ["edge", "sink"]
    (console,) = of(docs, "Deployment", "console")
    command = console["spec"]["template"]["spec"]["containers"][0]["command"]
    assert (
        command[:2] == ["safecity", "console"]
        and "--console-db=/var/lib/safecity/console/console.sqlite" in command
    )
    # and the edges' configs, as `safecity run` reads them, list the replicas
    (cm,) = of(docs, "ConfigMap")
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
        assert load_config(tmp_path / name).sink.endpoint == replicas


def test_a_server_keeps_its_pod_from_plan_to_plan(tmp_path: Path) -> None:
    """Pod edge-N keeps its server (its outbox volume is that server's) while the server stays: one
    leaving the middle of the list frees its pod for the last one, not a shift of every pod after it."""

    def pods() -> dict[str, str]:
        data: dict[str, str] = {}
        for path in tmp_path.glob("configmap-*.yaml"):
            data |= yaml.safe_load(path.read_text())["data"]
        return {name: yaml.safe_load(text)["edge_id"] for name, text in data.items()}

    inv = make_inventory(["s"] * 600, [1.0] * 600)

    def plan_for(ids: list[str]) -> list[str]:
        servers = make_servers([(i, "s", 300.0) for i in ids])
        return write_kubernetes(tmp_path, "s", inv, servers, plan(inv, servers), {})[1]

    assert plan_for(["a", "b", "c", "d", "e"]) == []
    assert pods() == {"edge-0.yaml": "a", "edge-1.yaml": "b", "edge-2.yaml": "c", "edge-3.yaml": "d",
                      "edge-4.yaml": "e"}  # fmt: skip
    assert plan_for(["a", "c", "d", "e"]) == ["e"]  # b gone: e moves down into its pod, c and d stay
    assert pods() == {"edge-0.yaml": "a", "edge-1.yaml": "e", "edge-2.yaml": "c", "edge-3.yaml": "d"}
    assert plan_for(["f", "a", "c", "d", "e"]) == []  # a new server takes the next pod
    assert pods()["edge-4.yaml"] == "f" and pods()["edge-1.yaml"] == "e"
    assert plan_for(["g", "h", "a", "c"]) == []  # d, e, f gone, g and h new: into the free pods 1 and 3
    assert pods() == {"edge-0.yaml": "a", "edge-1.yaml": "g", "edge-2.yaml": "c", "edge-3.yaml": "h"}
    (tmp_path / "ordinals.csv").unlink()  # lost: the previous plan's ConfigMaps still say who ran where
    assert plan_for(["g", "h", "a", "c", "i"]) == []
    assert pods() == {"edge-0.yaml": "a", "edge-1.yaml": "g", "edge-2.yaml": "c", "edge-3.yaml": "h",
                      "edge-4.yaml": "i"}  # fmt: skip
    for text, why in [("ordinal,server_id\n0,a\n0,c\n", "ordinals repeated"),
                      ("ordinal,server_id\n0,a\n3,a\n", "server 'a' is listed twice"),
                      ("ordinal,server_id\n1_0,a\n", "line 2: expected ORDINAL,SERVER_ID"),
                      ("ordinal,server_id\n0\n", "line 2: expected ORDINAL,SERVER_ID"),
                      ("server,pod\n0,a\n", "expected the header")]:  # fmt: skip
        (tmp_path / "ordinals.csv").write_text(text)
        with pytest.raises(ConfigError, match=why):
            plan_for(["a", "c"])
    (tmp_path / "ordinals.csv").write_text("\ufeffordinal , server_id\n 0 , a \n1,c\n")  # a spreadsheet's
    assert plan_for(["a", "c"]) == []


def test_ordinals_are_a_permutation_that_keeps_every_server_it_can() -> None:
    from pipeline.fleet.ordinals import assign

    rng = np.random.default_rng(11)
    for _ in range(300):
        pool = [f"s{i}" for i in range(12)]
        before = list(rng.permutation(pool)[: rng.integers(0, 12)])
        previous = {sid: o for o, sid in enumerate(before)}
        now = list(rng.permutation(pool)[: rng.integers(1, 12)])
        by_ordinal, moved = assign(now, previous)
        assert sorted(by_ordinal) == sorted(now)
        for o, sid in enumerate(by_ordinal):
            if sid in previous and previous[sid] < len(now):
                assert previous[sid] == o  # kept its pod
        assert sorted(moved) == sorted(s for s in now if s in previous and previous[s] >= len(now))
