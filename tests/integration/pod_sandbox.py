"""Run a Kubernetes container's exact command here, as its pod would run it.

`container_spec` reads one container of a rendered manifest (`kubectl kustomize`):
its args (the image's ENTRYPOINT is only tini, so the args are the command), its
environment (ConfigMap `envFrom`, literals, the downward API, Secret references) and
its volume mounts. `Sandbox` gives it what the pod has: a working directory that
cannot be written (the read-only root filesystem; the image's WORKDIR and HOME), a
writable directory per emptyDir mount, the image's own environment (Dockerfile `ENV`),
and, as root, the image's non-root UID so the directory modes really bind. Paths in
the environment under a mount or the WORKDIR are rewritten to their stand-ins here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
APP_UID = 10001  # Dockerfile ARG APP_UID; the manifests' runAsUser


def render(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize k8s/overlays/OVERLAY`, parsed."""
    kubectl = Path(sys.executable).parent / "kubectl"
    argv = [str(kubectl if kubectl.exists() else "kubectl"), "kustomize", str(REPO / "k8s" / "overlays" / overlay)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@dataclass(frozen=True)
class ContainerSpec:
    """What Kubernetes would start: argv, environment, secrets to supply, emptyDir mounts."""

    argv: list[str]
    env: dict[str, str]
    secret_env: dict[str, tuple[str, bool]]  # variable -> (secret key, optional)
    mounts: list[str]  # emptyDir mount paths


def container_spec(docs: list[dict[str, Any]], kind: str, name: str) -> ContainerSpec:
    """The single container of workload KIND/NAME in rendered `docs`."""
    (workload,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    spec = workload["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert "command" not in container, "the image's ENTRYPOINT (tini) runs the args"
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    secrets: dict[str, tuple[str, bool]] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            assert path == "metadata.namespace", f"no stand-in for the downward API field {path}"
            env[var["name"]] = workload["metadata"]["namespace"]
        elif "secretKeyRef" in ref:
            secrets[var["name"]] = (ref["secretKeyRef"]["key"], bool(ref["secretKeyRef"].get("optional")))
        else:
            raise AssertionError(f"no stand-in for {ref}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = [m["mountPath"] for m in container.get("volumeMounts", []) if "emptyDir" in volumes[m["name"]]]
    return ContainerSpec(argv=list(container["args"]), env=env, secret_env=secrets, mounts=mounts)


def image_env() -> tuple[dict[str, str], str]:
    """The runtime stage's `ENV` values and `WORKDIR` in the Dockerfile."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stage = re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]
    env: dict[str, str] = {}
    workdir = "/"
    for line in stage.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            for token in shlex.split(rest, comments=True):
                key, _, value = token.partition("=")
                if "$" not in value:
                    env[key] = value
        elif instruction == "WORKDIR":
            workdir = rest.strip()
    return env, workdir


@dataclass
class Sandbox:
    """A read-only working directory and writable emptyDir stand-ins under one private root."""

    mounts: list[str]
    root: Path = field(init=False)
    workdir: Path = field(init=False)
    volumes: dict[str, Path] = field(init=False)

    def __post_init__(self) -> None:
        # Not under pytest's tmp dir: that is 0700 root, which the app UID cannot traverse.
        self.root = Path(tempfile.mkdtemp(prefix="churn-pod-", dir="/tmp"))
        self.root.chmod(0o755)
        self.workdir = self.root / "workdir"
        self.workdir.mkdir()
        self.volumes = {}
        for mount in self.mounts:
            path = self.root / "volumes" / mount.strip("/").replace("/", "-")
            path.mkdir(parents=True)
            self.volumes[mount] = path
        (self.root / "volumes").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in self.volumes.values():
                os.chown(path, APP_UID, APP_UID)
        self.workdir.chmod(0o555)

    @property
    def as_app_user(self) -> list[str]:
        """A prefix that runs the command as the image's UID (as root), else as ourselves."""
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups", "--"]

    def here(self, value: str, image_workdir: str) -> str:
        """`value` with a leading pod path (a mount, or the image's WORKDIR) moved to its stand-in."""
        places = {**self.volumes, image_workdir: self.workdir}
        for pod_path in sorted(places, key=len, reverse=True):
            if value == pod_path or value.startswith(pod_path.rstrip("/") + "/"):
                return str(places[pod_path]) + value[len(pod_path.rstrip("/")):]
        return value

    def environment(self, spec: ContainerSpec, services: Mapping[str, str]) -> dict[str, str]:
        """The pod's environment here: image ENV, then the manifest's, then the test's services."""
        baked, image_workdir = image_env()
        env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]), "LANG": "C.UTF-8"}
        env.update({k: self.here(v, image_workdir) for k, v in baked.items()})
        env.update({k: self.here(v, image_workdir) for k, v in spec.env.items()})
        if "/tmp" in self.volumes:
            env["TMPDIR"] = str(self.volumes["/tmp"])  # Python's default /tmp is the emptyDir in the pod
        if "/opt/ml" in self.volumes:
            env.setdefault("SAGEMAKER_BASE_DIR", str(self.volumes["/opt/ml"]))  # the code's default /opt/ml
        env.update(services)
        return env

    def run(self, argv: list[str], env: Mapping[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_app_user, *argv], cwd=self.workdir, env=dict(env),
                              capture_output=True, text=True, timeout=timeout)

    def written(self) -> list[str]:
        """Files the command left, relative to the sandbox root (the workdir must have none)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
