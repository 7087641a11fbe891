"""Kubernetes manifests: every overlay renders, validates against the API schema
(kubernetes-validate --strict), and obeys the rules the schema cannot express."""

from __future__ import annotations

import re
import shutil
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    APP_UID,
    CONTRACT_ENV,
    K8S,
    OVERLAYS,
    SECRET_ENV,
    SECRET_NAME,
    by_kind,
    containers,
    env_of,
    one,
    pod_templates,
    render,
    run,
    selector_matches,
    tool,
)

Docs = list[dict[str, Any]]

# Current Kubernetes (newest schema kubernetes-validate ships) and the oldest
# release the manifests are written for (backoffLimitPerIndex GA in 1.33; the
# preStop `sleep` action is on by default since 1.30).
K8S_VERSIONS = ("1.37.0", "1.33.0")


# ------------------------------------------------------------------ schema validation
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", ("base",) + OVERLAYS)
def test_rendered_manifests_pass_strict_schema_validation(target: str, version: str, tmp_path: Path) -> None:
    path = K8S / "base" if target == "base" else K8S / "overlays" / target
    out = tmp_path / f"{target}.yaml"
    out.write_text(run([tool("kubectl"), "kustomize", str(path)]).stdout)
    proc = run([tool("kubernetes-validate"), "--strict", "--no-warn", "-k", version, str(out)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """Guard: the validator really is strict (a misspelt field fails)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x"},
                "data": {"a": "b"},
                "dataa": {"typo": "here"},
            }
        )
    )
    proc = run([tool("kubernetes-validate"), "--strict", "--no-warn", str(bad)], check=False)
    assert proc.returncode != 0


def test_expected_objects_in_every_overlay(overlay: tuple[str, Docs]) -> None:
    _, docs = overlay
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("CronJob", "churn-scoring"),
        ("CronJob", "churn-training"),
        ("Deployment", "churn-serving"),
        ("Service", "churn-serving"),
        ("HorizontalPodAutoscaler", "churn-serving"),
        ("PodDisruptionBudget", "churn-serving"),
        ("ServiceAccount", "churn"),
        ("PodMonitor", "churn-serving"),
    ]:
        assert expected in kinds
    assert by_kind(docs, "ConfigMap"), "the location ConfigMap is missing"
    assert by_kind(docs, "NetworkPolicy"), "no NetworkPolicy"
    api = {(d["kind"], d["apiVersion"]) for d in docs}
    assert ("HorizontalPodAutoscaler", "autoscaling/v2") in api
    assert ("CronJob", "batch/v1") in api
    assert ("PodDisruptionBudget", "policy/v1") in api


def test_overlays_use_their_own_namespace(rendered: dict[str, Docs]) -> None:
    namespaces = {}
    for name in OVERLAYS:
        found = {d["metadata"].get("namespace") for d in rendered[name] if d["kind"] != "Namespace"}
        assert len(found) == 1 and None not in found, f"{name}: objects without or with mixed namespaces: {found}"
        namespaces[name] = found.pop()
    assert len(set(namespaces.values())) == len(OVERLAYS)


def test_each_overlay_creates_its_namespace_under_the_restricted_pod_security_profile(
    overlay: tuple[str, Docs],
) -> None:
    name, docs = overlay
    (namespace,) = by_kind(docs, "Namespace")
    (workload_namespace,) = {d["metadata"]["namespace"] for d in docs if d["kind"] != "Namespace"}
    assert namespace["metadata"]["name"] == workload_namespace, name
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode


# ------------------------------------------------------------------ nightly scoring
def _scoring(docs: Docs) -> dict[str, Any]:
    return one(docs, "CronJob", "churn-scoring")


def test_scoring_cronjob_schedule_and_policy(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    spec = _scoring(docs)["spec"]
    assert len(spec["schedule"].split()) == 5
    zoneinfo.ZoneInfo(spec["timeZone"])  # a real IANA zone, not a typo
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 10
    assert 1 <= spec["failedJobsHistoryLimit"] <= 10
    assert spec.get("suspend", False) is False


def test_scoring_job_is_indexed_with_one_pod_per_shard(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    job = _scoring(docs)["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] >= 1
    (container,) = job["template"]["spec"]["containers"]
    shard_count = env_of(container)["SCORE_SHARD_COUNT"]
    assert "valueFrom" not in shard_count
    assert int(shard_count["value"]) == job["completions"], (
        "SCORE_SHARD_COUNT must equal completions and parallelism (docs/deployment.md: Scale shards)"
    )
    assert job["backoffLimitPerIndex"] >= 1
    assert 0 <= job["maxFailedIndexes"] <= job["completions"]
    assert job["activeDeadlineSeconds"] > 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert container.get("args") == ["score"]
    assert "command" not in container, "use args so the image's ENTRYPOINT (tini) stays PID 1"


def test_production_runs_more_shards_and_replicas_than_staging(rendered: dict[str, Docs]) -> None:
    def shards(docs: Docs) -> int:
        return int(_scoring(docs)["spec"]["jobTemplate"]["spec"]["completions"])

    def replicas(docs: Docs) -> int:
        return int(one(docs, "Deployment", "churn-serving")["spec"]["replicas"])

    assert shards(rendered["production"]) > shards(rendered["staging"])
    assert replicas(rendered["production"]) > replicas(rendered["staging"])


@pytest.mark.parametrize("cronjob,container_name", [("churn-scoring", "score"), ("churn-training", "train")])
def test_pod_failure_policy_fails_fast_on_exit_code_3(
    any_render: tuple[str, Docs], cronjob: str, container_name: str
) -> None:
    _, docs = any_render
    job = one(docs, "CronJob", cronjob)["spec"]["jobTemplate"]["spec"]
    names = [c["name"] for c in job["template"]["spec"]["containers"]]
    assert container_name in names
    rules = job["podFailurePolicy"]["rules"]
    fail_job = [r for r in rules if r["action"] == "FailJob" and "onExitCodes" in r]
    assert fail_job, "no FailJob rule on exit codes"
    codes = fail_job[0]["onExitCodes"]
    assert codes["operator"] == "In" and codes["values"] == [3]
    # ... which is the code's own "bad input or configuration" exit code.
    from churn.errors import EXIT_BAD_INPUT, EXIT_RETRYABLE

    assert codes["values"] == [EXIT_BAD_INPUT] and EXIT_RETRYABLE not in codes["values"]
    assert codes.get("containerName") in (None, container_name)
    # 1 (infrastructure, worth retrying) must not be in any FailJob rule.
    assert all(1 not in r.get("onExitCodes", {}).get("values", []) for r in rules if r["action"] == "FailJob")
    ignore = [r for r in rules if r["action"] == "Ignore"]
    assert any(c["type"] == "DisruptionTarget" for r in ignore for c in r.get("onPodConditions", []))
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # required by podFailurePolicy


# ------------------------------------------------------------------ training
def test_training_cronjob_is_weekly_and_can_promote(any_render: tuple[str, Docs]) -> None:
    name, docs = any_render
    cron = one(docs, "CronJob", "churn-training")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    zoneinfo.ZoneInfo(spec["timeZone"])
    minute, hour, dom, month, dow = spec["schedule"].split()
    if name != "staging":  # staging retrains on weekdays on purpose
        assert dom == "*" and month == "*" and re.fullmatch(r"[0-6]", dow), f"not weekly: {spec['schedule']}"
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["train", "--promote"], "this job is where production moves: explicitly"
    # Promotion needs the registry: MLFLOW_TRACKING_URI via the ConfigMap, the
    # labelled customers from MongoDB via the Secret.
    assert _config_value(docs, container, "MLFLOW_TRACKING_URI").startswith("http")
    assert env_of(container)["MONGODB_URI"]["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME


def test_cronjob_commands_are_the_same_in_every_overlay(rendered: dict[str, Docs]) -> None:
    """tests/integration/test_k8s_jobs.py runs production's commands: staging runs the same."""
    for name in ("churn-scoring", "churn-training"):
        commands = {
            overlay: [c["args"] for c in one(rendered[overlay], "CronJob", name)["spec"]["jobTemplate"]["spec"]
                      ["template"]["spec"]["containers"]]
            for overlay in OVERLAYS
        }
        assert len({repr(c) for c in commands.values()}) == 1, commands


# ------------------------------------------------------------------ serving
def _serving(docs: Docs) -> dict[str, Any]:
    return one(docs, "Deployment", "churn-serving")


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_serving_deployment_rolls_without_downtime(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    spec = _serving(docs)["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    assert selector_matches(spec["selector"], spec["template"]["metadata"]["labels"])


def test_serving_ready_on_ping_alive_on_live_on_8080(any_render: tuple[str, Docs]) -> None:
    """Readiness: a model is loaded (/ping). Liveness and startup (both restart the container
    when they fail): the process answers (/live), so no model yet is never a restart loop."""
    _, docs = any_render
    (container,) = _serving(docs)["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert _port_number(container, "http") == 8080
    paths = {"readinessProbe": "/ping", "livenessProbe": "/live", "startupProbe": "/live"}
    for probe, path in paths.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path, probe
        assert _port_number(container, http["port"]) == 8080, probe
        assert container[probe]["timeoutSeconds"] <= 2, f"{probe}: {path} must answer within 2 s"
    env = env_of(container)
    assert env["SAGEMAKER_BIND_TO_PORT"]["value"] == "8080"
    assert int(env["SAGEMAKER_MODEL_SERVER_WORKERS"]["value"]) >= 1


def test_serving_grace_period_covers_pre_stop_and_the_drain(any_render: tuple[str, Docs]) -> None:
    """SIGKILL must not cut the drain short: grace >= preStop sleep + gunicorn's graceful timeout."""
    _, docs = any_render
    pod = _serving(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(env_of(container)["SAGEMAKER_MODEL_SERVER_TIMEOUT"]["value"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain


def test_serving_resources_and_graceful_shutdown(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    pod = _serving(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop


def test_serving_metrics_scraped_from_a_multiprocess_dir(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    template = _serving(docs)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _port_number(container, "http")
    assert annotations["prometheus.io/path"] == "/metrics"
    multiproc = env_of(container)["PROMETHEUS_MULTIPROC_DIR"]["value"]
    assert multiproc == "/tmp/prometheus"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[multiproc]], "multiprocess dir must be a fresh emptyDir per pod"


def test_service_hpa_pdb_point_at_the_serving_pods(any_render: tuple[str, Docs]) -> None:
    name, docs = any_render
    deployment = _serving(docs)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    service = one(docs, "Service", "churn-serving")
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
    for port in service["spec"]["ports"]:
        assert _port_number(container, port["targetPort"]) == 8080
    expected_type = "LoadBalancer" if name == "production" else "ClusterIP"
    assert service["spec"].get("type", "ClusterIP") == expected_type

    hpa = one(docs, "HorizontalPodAutoscaler", "churn-serving")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-serving"}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert hpa["minReplicas"] == deployment["spec"]["replicas"], (
        "Deployment replicas must equal HPA minReplicas so kubectl apply never scales below the floor"
    )
    cpu = [m for m in hpa["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    assert "cpu" in container["resources"]["requests"], "CPU utilisation needs a CPU request"

    pdb = one(docs, "PodDisruptionBudget", "churn-serving")["spec"]
    assert selector_matches(pdb["selector"], pod_labels)
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] < hpa["minReplicas"]
    else:
        assert pdb["minAvailable"] < hpa["minReplicas"]


def test_production_load_balancer_is_internal(rendered: dict[str, Docs]) -> None:
    service = one(rendered["production"], "Service", "churn-serving")
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"


# ------------------------------------------------------------------ security
def test_every_pod_and_container_is_locked_down(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    templates = list(pod_templates(docs))
    assert len(templates) == 3
    for where, template in templates:
        pod = template["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] == APP_UID, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False, where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["serviceAccountName"] == "churn", where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers(template):
            at = f"{where} container {c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, at
            assert sc.get("runAsUser", APP_UID) == APP_UID, at
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc.get("privileged", False) is False, at
            assert "ALL" in sc["capabilities"]["drop"], at
            assert not sc["capabilities"].get("add"), at
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", at
            # The root filesystem is read-only: the writable paths are emptyDirs.
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for path in ("/tmp", "/opt/ml"):
                assert path in mounts, f"{at}: no writable {path}"
                assert "emptyDir" in volumes[mounts[path]], f"{at}: {path} is not an emptyDir"


def test_service_account_has_a_per_environment_iam_role(rendered: dict[str, Docs]) -> None:
    arns = {}
    for name in ("base",) + OVERLAYS:
        sa = one(rendered[name], "ServiceAccount", "churn")
        arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn), arn
        arns[name] = arn
    for name in OVERLAYS:
        assert name in arns[name], f"{name} overlay must set its own role: {arns[name]}"
    assert len(set(arns.values())) == len(arns)


def test_network_policies_cover_every_workload(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    policies = by_kind(docs, "NetworkPolicy")
    for where, template in pod_templates(docs):
        labels = template["metadata"]["labels"]
        matching = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)]
        assert matching, f"{where} is not selected by any NetworkPolicy"
        for p in matching:
            assert {"Ingress", "Egress"} <= set(p["spec"]["policyTypes"]), p["metadata"]["name"]
    serving_labels = _serving(docs)["spec"]["template"]["metadata"]["labels"]
    serving_policy = [p for p in policies if selector_matches(p["spec"]["podSelector"], serving_labels)]
    ports = {
        port["port"] for p in serving_policy for rule in p["spec"].get("ingress", []) for port in rule.get("ports", [])
    }
    assert ports == {8080}, "serving pods must accept exactly port 8080"
    scoring_labels = _scoring(docs)["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    for p in policies:
        if selector_matches(p["spec"]["podSelector"], scoring_labels):
            assert not p["spec"].get("ingress"), "batch pods accept no connection"


# ------------------------------------------------------------------ images
def test_images_are_tagged_never_latest(any_render: tuple[str, Docs]) -> None:
    name, docs = any_render
    images = {c["image"] for _, t in pod_templates(docs) for c in containers(t)}
    assert len(images) == 1, f"all workloads run the one churn image: {images}"
    image = images.pop()
    assert "@sha256:" in image or re.search(r":[\w][\w.-]{0,127}$", image.rsplit("/", 1)[-1]), f"untagged image {image}"
    assert not image.endswith(":latest")
    if name != "base":
        repo, tag = image.rsplit(":", 1)
        assert re.fullmatch(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/churn", repo), repo
        assert re.fullmatch(r"[0-9a-f]{40}", tag), f"overlay tags are git SHAs (CD sets them): {tag}"
    for _, template in pod_templates(docs):
        for c in containers(template):
            assert c.get("imagePullPolicy") in ("IfNotPresent", None), "immutable SHA tags need no Always pull"


def test_cd_image_rewrite_reaches_every_workload(tmp_path: Path) -> None:
    """What `kustomize edit set image churn=REG/churn:SHA` does to an overlay
    (rewrite its `images` entry), then render: the Deployment and both CronJobs
    all run that image. Proves the CD step needs exactly one edit per overlay."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    sha = "0123456789abcdef0123456789abcdef01234567"
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    for overlay in OVERLAYS:
        kfile = tree / "overlays" / overlay / "kustomization.yaml"
        kust = yaml.safe_load(kfile.read_text())
        (entry,) = [i for i in kust["images"] if i["name"] == "churn"]
        entry.update(newName=f"{registry}/churn", newTag=sha)
        kfile.write_text(yaml.safe_dump(kust))
        docs = render(tree / "overlays" / overlay)
        images = [c["image"] for _, t in pod_templates(docs) for c in containers(t)]
        assert images and set(images) == {f"{registry}/churn:{sha}"}, images
        assert len(images) == 3


# ------------------------------------------------------------------ configuration
def _config_value(docs: Docs, container: dict[str, Any], key: str) -> str:
    env = env_of(container)
    if key in env:
        return env[key]["value"]
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        data = one(docs, "ConfigMap", name).get("data", {})
        if key in data:
            return data[key]
    raise AssertionError(f"{key} not set for container {container['name']}")


def test_env_vars_are_the_contracts_and_secrets_come_from_secret_refs(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    configmaps = {c["metadata"]["name"]: c for c in by_kind(docs, "ConfigMap")}
    for where, template in pod_templates(docs):
        for c in containers(template):
            at = f"{where} container {c['name']}"
            for source in c.get("envFrom", []):
                assert set(source) == {"configMapRef"}, f"{at}: envFrom only from the location ConfigMap"
                cm = configmaps[source["configMapRef"]["name"]]  # exists in the render
                unknown = set(cm["data"]) - CONTRACT_ENV
                assert not unknown, f"ConfigMap keys outside the contract: {unknown}"
                assert not set(cm["data"]) & SECRET_ENV, "credentials in a ConfigMap"
            for var in c.get("env", []):
                assert var["name"] in CONTRACT_ENV, f"{at}: {var['name']} is not a contract variable"
                if var["name"] in SECRET_ENV:
                    ref = var["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET_NAME, at
                    assert "value" not in var, at
            names = {v["name"] for v in c.get("env", [])}
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & names, "S3 access is IRSA only"


def test_no_secret_objects_or_values_in_the_repo_manifests(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    assert not by_kind(docs, "Secret"), "Secrets are created outside the repo (referenced only)"
    text = yaml.safe_dump_all(docs)
    assert "AKIA" not in text and "aws_secret_access_key" not in text.lower()
    assert not re.search(r"mongodb(\+srv)?://[^/\s]*:[^@\s]*@", text), "a MongoDB URI with a password"


def test_configuration_sets_the_container_defaults(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    (container,) = _scoring(docs)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert _config_value(docs, container, "LOG_FORMAT") == "json"
    assert _config_value(docs, container, "MLFLOW_DISABLE_TELEMETRY") == "true"
    assert _config_value(docs, container, "DVC_NO_ANALYTICS") == "1"
    assert _config_value(docs, container, "CHURN_MODEL_URI") == "models:/churn@production"
    assert _config_value(docs, container, "RISK_TABLE_URI").startswith("s3://")
    assert _config_value(docs, container, "PUSHGATEWAY_URL").startswith("http")


def test_everything_is_labelled_part_of_churn(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "churn", d["metadata"]["name"]
    for where, template in pod_templates(docs):
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "churn", where
