"""serve's configuration: the bind address, exit 3 on a bad setting, the metrics directory's life."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from churn.errors import ConfigError
from churn.settings import Settings
from churn_serve import gunicorn_conf, metrics_dir
from churn_serve.server import serve_command


def test_by_default_serve_listens_on_every_interface_as_containers_need() -> None:
    assert gunicorn_conf.options(Settings())["bind"] == ["0.0.0.0:8080"]


@pytest.mark.parametrize("address, bind", [("127.0.0.1", "127.0.0.1:9000"), ("::1", "[::1]:9000"),
                                           ("localhost", "localhost:9000"), ("::", "[::]:9000")])
def test_the_bind_address_comes_from_the_environment(address: str, bind: str) -> None:
    settings = Settings.from_env({"CHURN_BIND_ADDRESS": address, "SAGEMAKER_BIND_TO_PORT": "9000"})
    assert gunicorn_conf.options(settings)["bind"] == [bind]


@pytest.mark.parametrize("address", ["not a host", "10.0.0.1:80", "-bad-", "a" * 300, "http://x"])
def test_a_bad_bind_address_is_refused_naming_the_variable(address: str) -> None:
    with pytest.raises(ConfigError, match="CHURN_BIND_ADDRESS"):
        Settings.from_env({"CHURN_BIND_ADDRESS": address})


@pytest.mark.parametrize("env, args", [
    ({"SAGEMAKER_BIND_TO_PORT": "http"}, []),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "-2"}, []),
    ({}, ["--host", "not a host"]),
])
def test_a_configuration_error_exits_3_with_the_reason(env: dict[str, str], args: list[str]) -> None:
    """3 is 'do not retry' (README); click's usage errors would exit 2."""
    result = CliRunner().invoke(serve_command, args, env={"LOG_FORMAT": "text", **env})
    assert result.exit_code == 3, result.output
    assert "serve failed: ConfigError" in result.output
    assert (list(env) or ["CHURN_BIND_ADDRESS"])[0] in result.output


def test_starting_removes_the_metrics_directories_of_dead_servers(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = tmp_path / f"churn-prometheus-{finished.stdout.strip()}-abc"
    alive = tmp_path / f"churn-prometheus-{os.getppid()}-def"
    for directory in (dead, alive):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"x")
    made = metrics_dir.prepare(None)
    assert not dead.exists() and alive.exists()
    assert sorted(tmp_path.iterdir()) == sorted([alive, made])


def test_the_server_removes_only_the_directory_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    made = metrics_dir.prepare(None)
    assert made.parent == tmp_path and made.name.startswith(f"churn-prometheus-{os.getpid()}-")
    given = tmp_path / "mounted"
    metrics_dir.remove_own(str(given))
    metrics_dir.remove_own(str(made))
    assert not made.exists()


def test_a_given_metrics_directory_is_emptied_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "counter_12.db").write_bytes(b"old counts")
    (tmp_path / "keep.txt").write_text("not ours")
    assert metrics_dir.prepare(str(tmp_path)) == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
