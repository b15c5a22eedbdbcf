"""deploy/k8s: every manifest validates offline against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), the GPU overlay's patches hit resources of the base and the patched
StatefulSet validates too, and the manifests agree with each other, with the config loader, with the
CLI and with the HTTP server's probe endpoints."""

import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from streamer.cli import build_parser
from streamer.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())  # 1.28: the first with the pod-index label


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests():
    """(kind, name) -> resource, over every file `kubectl apply -f deploy/k8s/` reads."""
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for d in docs(path):
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def kustomization(directory):
    found = [p for p in (directory / "kustomization.yaml", directory / "kustomization.yml", directory / "Kustomization") if p.is_file()]
    assert len(found) == 1, f"{directory}: kustomize needs exactly one kustomization file, found {found}"
    k = yaml.safe_load(found[0].read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    return k


def build(directory):
    """What `kubectl kustomize` makes of this directory, for the features used here: resources (files
    or directories with a kustomization) and strategic merge patches by file."""
    k = kustomization(directory)
    out = {}
    for r in k.get("resources", []):
        target = (directory / r).resolve()
        if target.is_dir():
            out.update(build(target))
        else:
            for d in docs(target):
                out[(d["kind"], d["metadata"]["name"])] = d
    for p in k.get("patches", []):
        assert set(p) == {"path"}, f"only patch files are used here: {p}"
        for patch in docs(directory / p["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            assert key in out, f"{directory / p['path']}: patches {key}, which the base does not have ({sorted(out)})"
            assert patch["apiVersion"] == out[key]["apiVersion"]
            out[key] = merge(out[key], patch, f"{p['path']}")
    return out


def merge(base, patch, where):
    """Strategic merge as the patched fields need it: maps merge, lists of named items merge by name;
    a named item the base lacks is an error here (a patch meant to change a container that is not there)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: merge(base[k], v, f"{where}.{k}") if k in base else v for k, v in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        names = {x["name"] for x in base}
        by_name = {x["name"]: x for x in patch}
        if where.endswith(".containers"):
            missing = set(by_name) - names
            assert not missing, f"{where}: no container named {sorted(missing)} in the base"
        return [merge(x, by_name[x["name"]], f"{where}[{x['name']}]") if x["name"] in by_name else x for x in base] + \
               [x for x in patch if x["name"] not in names]
    return patch


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    resources = manifests()
    assert {kind for kind, _ in resources} >= {"StatefulSet", "ConfigMap", "Secret", "Service", "PodDisruptionBudget", "Deployment"}
    gpu = build(K8S / "gpu")
    for (kind, name), d in [*resources.items(), (("StatefulSet", "streamer (gpu overlay)"), gpu[("StatefulSet", "streamer")])]:
        try:
            kubernetes_validate.validate(d, version, strict=True)  # a kind without a schema raises too
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{kind}/{name} against {version}: {'.'.join(map(str, e.path))}: {e.message}")


def test_strict_validation_catches_a_misspelt_field():
    sts = manifests()[("StatefulSet", "streamer")]
    bad = merge(sts, {"spec": {"template": {"spec": {"containers": [{"name": "streamer", "livenesProbe": {}}]}}}}, "spec.template.spec.containers")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_the_base_kustomization_lists_what_kubectl_apply_reads():
    listed = sorted(kustomization(K8S)["resources"])
    assert listed == sorted(p.name for p in K8S.glob("*.yaml"))
    assert not list(K8S.glob("*.yml")) and not list(K8S.glob("*.json"))  # kubectl apply -f would read these too


def test_gpu_overlay_asks_for_a_gpu_and_the_gpu_image():
    base, gpu = build(K8S), build(K8S / "gpu")
    assert set(base) == set(gpu)  # the overlay adds nothing, only patches
    c = gpu[("StatefulSet", "streamer")]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["image"] == "streamer:gpu"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"] for e in c["env"]}
    assert {"STREAMER_SHARD_INDEX", "STREAMER_REDIS_URL", "STREAMER_ENGINE_CACHE"} <= env  # merged by name, none lost
    assert base[("Deployment", "alert-consumer")] == gpu[("Deployment", "alert-consumer")]
    assert "streamer:gpu" in (ROOT / "deploy/docker/Dockerfile.gpu").read_text()
    assert "streamer:cpu" in (ROOT / "deploy/docker/Dockerfile.cpu").read_text()


def test_manifests_agree_with_each_other_and_the_config(monkeypatch):
    r = manifests()
    sts = r[("StatefulSet", "streamer")]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    monkeypatch.delenv("STREAMER_REDIS_URL", raising=False)
    monkeypatch.delenv("STREAMER_SHARD_INDEX", raising=False)
    config_map = r[("ConfigMap", "streamer-config")]
    cfg = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]), "configmap")  # a valid streamer config
    assert cfg.shard.replicas == sts["spec"]["replicas"]
    assert cfg.http.host == "0.0.0.0"
    port = cfg.http.port
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [port]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    svc = r[("Service", sts["spec"]["serviceName"])]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["ports"][0]["port"] == port
    for selector in (sts["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
                     r[("PodDisruptionBudget", "streamer")]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    # the config file the container is told to run is where the ConfigMap is mounted
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "streamer-config"
    assert container["args"] == ["run", f"{mounts['config']}/config.yaml"]
    build_parser().parse_args(container["args"])
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert cfg.redis.spool_dir.startswith(mounts["state"]) and cfg.anomaly.dir.startswith(mounts["state"]) and "state" in claims
    for workload in (sts, r[("Deployment", "alert-consumer")]):
        spec = workload["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        for c in spec["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in r[("Secret", ref["name"])]["stringData"], e


def test_consumer_deployment_runs_a_claiming_group_member():
    d = manifests()[("Deployment", "alert-consumer")]
    c = d["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = build_parser().parse_args([a.replace("$(POD_NAME)", "alert-consumer-abc12") for a in c["args"]])
    assert args.cmd == "alerts" and args.group and args.consumer == "alert-consumer-abc12" and args.claim_idle > 0


def test_probes_hit_endpoints_the_http_server_has():
    from streamer.outputs import metrics
    from streamer.web.server import HttpServer

    container = manifests()[("StatefulSet", "streamer")]["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert paths == {"/readyz", "/healthz"}
    srv = HttpServer("127.0.0.1", 0).start()  # no pipeline attached
    port = srv.port

    def status(path):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
        except urllib.error.HTTPError as e:
            return e.code

    was_ready = metrics.READY.is_set()
    metrics.READY.clear()
    try:
        assert status("/healthz") == 200 and status("/readyz") == 503
        metrics.READY.set()
        assert status("/readyz") == 200 and status("/metrics") == 200
    finally:
        srv.close()
        if not was_ready:
            metrics.READY.clear()
