"""Fixtures of the container image tests: the runtime, the image (built once per session), servers.

Every test here is marked `image`. Without a Docker engine and without buildah they FAIL
with the apt package to install, never skip. The image is built once per session by
scripts/build-image.sh (cached layers make a rebuild without changes take seconds);
CHURN_TEST_IMAGE=name uses an image built beforehand instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = Path(__file__).resolve().parent
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

import container_runtime  # noqa: E402  (lives in scripts/, put on the path just above)

# The real-server fixtures of the integration tests (SecantusDB, SeaweedFS, Pushgateway),
# loaded from their one definition under a module name of their own.
_spec = importlib.util.spec_from_file_location("churn_integration_fixtures", REPO / "tests/integration/conftest.py")
assert _spec and _spec.loader
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
mongo_server = _integration.mongo_server
mongo_client = _integration.mongo_client
mongo_db = _integration.mongo_db
s3_server = _integration.s3_server
s3_client = _integration.s3_client
s3_bucket = _integration.s3_bucket
pushgateway_server = _integration.pushgateway_server
mlflow_server = _integration.mlflow_server
unique_name = _integration.unique_name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/image as `image`."""
    for item in items:
        if IMAGE_DIR in item.path.parents:
            item.add_marker(pytest.mark.image)


@pytest.fixture(scope="session")
def runtime() -> container_runtime.Runtime:
    try:
        return container_runtime.detect()
    except container_runtime.RuntimeMissing as err:
        message = str(err)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def image(runtime: container_runtime.Runtime) -> str:
    """The project's image, built from this checkout (or CHURN_TEST_IMAGE as it is)."""
    prebuilt = os.environ.get("CHURN_TEST_IMAGE")
    if prebuilt:
        return prebuilt
    name = "churn:test"
    try:
        runtime.build(name, REPO)
    except RuntimeError as err:
        message = str(err)
    else:
        return name
    pytest.fail(message, pytrace=False)


@pytest.fixture
def opt_ml(tmp_path: Path) -> Path:
    """An empty /opt/ml for one container, writable by the image's user (as an emptyDir with fsGroup)."""
    path = tmp_path / "opt_ml"
    path.mkdir()
    return path


def hand_to_app_user(path: Path) -> None:
    """chown -R to UID/GID 10001, as Kubernetes' fsGroup does for a pod's volumes
    (not root, e.g. on GitHub's runners: world-writable instead)."""
    uid, gid = (int(x) for x in container_runtime.APP_USER.split(":"))
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            if os.geteuid() == 0:
                os.chown(name, uid, gid)
            else:
                os.chmod(name, 0o777 if os.path.isdir(name) else 0o666)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def container_env() -> dict[str, str]:
    """What every test container gets: JSON logs and nothing from this process's environment."""
    return {"LOG_FORMAT": "json", "CHURN_THREADS": "1"}


def json_lines(output: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


@pytest.fixture
def started(runtime: container_runtime.Runtime) -> Iterator[list[container_runtime.Running]]:
    """Containers a test starts; killed and cleaned up by id whatever the test did."""
    running: list[container_runtime.Running] = []
    yield running
    for container in running:
        container.kill()


# `python -v` in every process of a container: for each module whose code it loads from a file,
# "# code object from /x.py" when it compiled the source (in memory: the root is read-only and
# PYTHONDONTWRITEBYTECODE=1) or "# code object from '/x.pyc'" when it read shipped byte-code.
VERBOSE_IMPORTS = {"PYTHONVERBOSE": "1"}
_COMPILED = re.compile(r"^# code object from (/\S+\.py)$", re.MULTILINE)
_FROM_PYC = re.compile(r"^# code object from '(/\S+\.pyc)'$", re.MULTILINE)


def byte_code_use(output: str) -> tuple[list[str], list[str]]:
    """(modules compiled in memory, .pyc files read) by a container's Python processes, from the
    output of a PYTHONVERBOSE=1 run: what each start of that command costs without byte-code."""
    return sorted(set(_COMPILED.findall(output))), sorted(set(_FROM_PYC.findall(output)))
