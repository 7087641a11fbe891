"""Byte-code for what runs: record the modules the image's entrypoints import, compile only those.

    python scripts/record_imports.py --venv /opt/venv --stdlib-pyc-root /opt/stdlib-pyc

Run by the Dockerfile's build stage, after the environment is installed and trimmed. It runs
the image's own console scripts in a scratch directory with nothing configured (the laptop
defaults: local files, MLflow in SQLite), as the image runs them:

  1. `churn --help`, `train --help`, `score --help`, `serve --help`;
  2. `churn data generate`: a CSV train channel, a Parquet validation channel, customers to score;
  3. `train` in the SageMaker layout (SAGEMAKER_BASE_DIR, hyperparameters.json, a short
     Optuna search): model, evaluation plots, MLflow logging, registration and promotion;
  4. `score` of the customers with the registry's `production` model: a local Delta risk
     table, metrics pushed to a local stand-in of the Pushgateway; `churn risk top`;
     `churn model list` against the local SQLite store and against a stand-in of MLflow's REST
     API (MLflow's HTTP client, as the cluster's jobs and serving use it); `churn risk top
     --from mongo` against a port where no MongoDB listens (MongoDB's client up to the
     server selection, ending as an outage, exit 1);
  5. `serve` (gunicorn, one worker, the model in /opt/ml/model): /ping, /invocations (JSON,
     CSV, a rejected record), /metrics, then SIGTERM.

Every one of those processes (gunicorn's worker too) runs with PYTHONVERBOSE=1, so the
interpreter itself reports the source file of every module whose code it loads, failed
optional imports included. Then exactly those files get a .pyc (unchecked-hash: valid
whatever the file times after COPY): the environment's in place, the base image's standard
library into --stdlib-pyc-root (for the runtime stage to copy over its Python; the official
image ships no .pyc of its own). Every other module keeps only its .py: importing it still
works, it is just compiled in memory each time. tests/image checks, the same way, that the
containers' train, score and serve compile nothing in memory.

It runs the code of this checkout, so when lib/, jobs/ or serve/ import something new, the
next build records and compiles it. A step that fails fails the build, naming the step: the
image's entrypoints must run on the trimmed environment before it is shipped.
"""

from __future__ import annotations

import argparse
import csv
import http.server
import importlib.util
import json
import os
import py_compile
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

RUN_DATE = "2024-03-31"

# What `python -v` (PYTHONVERBOSE=1) prints for every module whose code it loads from a file:
# compiled from the source ("code object from /x.py"), or from byte-code that matches the
# source ("/x.pyc matches /x.py"). Failed imports (an optional dependency missing) count too:
# their code is compiled and run before they fail, at every start.
CODE_FROM_SOURCE = re.compile(r"^# code object from (/\S+\.py)$", re.MULTILINE)
PYC_MATCHES = re.compile(r"^# /\S+\.pyc matches (/\S+\.py)$", re.MULTILINE)


def loaded_sources(output: str) -> set[str]:
    """The source files of the modules a verbose Python run loaded, from its output."""
    return set(CODE_FROM_SOURCE.findall(output)) | set(PYC_MATCHES.findall(output))


class Failed(RuntimeError):
    """A step of the run failed: the build stops with this message."""


def say(message: str) -> None:
    print(f"record-imports: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stub(http.server.ThreadingHTTPServer):
    """Stands in for the Pushgateway and for MLflow's REST API: accepts every request and
    answers 200 with an empty JSON object (to MLflow: no registered versions). Counts them."""

    def __init__(self) -> None:
        self.requests = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Run:
    """The scratch directory, the environment every process gets, and the steps."""

    def __init__(self, venv: Path, work: Path) -> None:
        self.venv = venv
        self.work = work
        self.sources: set[str] = set()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CHURN_", "MLFLOW_"))}
        self.env = {
            **inherited,
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(work),
            "PYTHONVERBOSE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  # this run must leave no .pyc of its own behind
            "MPLCONFIGDIR": str(work / "matplotlib"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "LOG_FORMAT": "json",
            "CHURN_THREADS": "1",
            "CHURN_DATA_DIR": str(work / "data"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "SAGEMAKER_BASE_DIR": str(work / "opt_ml"),
            "RISK_TABLE_URI": str(work / "risk"),
        }

    def run(self, step: str, *command: str, timeout: float = 600, expect: tuple[int, ...] = (0,),
            saying: str = "", **env: str) -> str:
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=self.work, env={**self.env, **env}, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise Failed(f"step '{step}' ({' '.join(command)}) did not finish in {timeout:.0f} s") from err
        self.sources |= loaded_sources(done.stderr)
        if done.returncode not in expect or saying not in done.stdout + done.stderr:
            tail = _tail(done.stdout + done.stderr)
            raise Failed(f"step '{step}' ({' '.join(command)}) exited {done.returncode}:\n{tail}")
        say(f"{step}: ok in {time.monotonic() - started:.1f} s")
        return done.stdout

    def generate(self, path: Path, customers: int, seed: int, *extra: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run(f"data generate {path.name}", "churn", "data", "generate", "--customers", str(customers),
                 "--seed", str(seed), "--out", str(path), *extra)

    def all_steps(self) -> None:
        for script in ("churn", "train", "score", "serve"):
            self.run(f"{script} --help", script, "--help")

        opt_ml = self.work / "opt_ml"
        self.generate(opt_ml / "input/data/train/part-0.csv", 2_000, 1, "--dirty-rate", "0.02")
        self.generate(opt_ml / "input/data/validation/part-0.parquet", 800, 2)
        self.generate(self.work / "active.parquet", 1_000, 3, "--labelled-share", "0")
        self.generate(self.work / "requests.csv", 20, 4, "--labelled-share", "0")
        config = opt_ml / "input/config"
        config.mkdir(parents=True)
        # The shipped hyperparameter search runs (it is on by default), cut to two trials.
        (config / "hyperparameters.json").write_text(json.dumps({"n_estimators": "40", "tuning.max_trials": "2"}))
        self.run("train (SageMaker layout, search, MLflow in SQLite)", "train", timeout=1200)
        if not (opt_ml / "model" / "MLmodel").is_file():
            raise Failed("step 'train' wrote no model to /opt/ml/model")

        stub = Stub()
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        try:
            self.run("score (registry model, risk table, Pushgateway)", "score", "--run-date", RUN_DATE,
                     "--source", str(self.work / "active.parquet"),
                     CHURN_MODEL_URI="models:/churn@production", PUSHGATEWAY_URL=stub.url)
            if not stub.requests:
                raise Failed("step 'score' pushed no metrics")
            self.run("churn risk top", "churn", "risk", "top", "--date", RUN_DATE, "--format", "csv")
            self.run("churn model list (SQLite)", "churn", "model", "list")
            # The stand-in holds no model: `churn model list` says so with exit 3 (ModelNotFound) after
            # MLflow's REST client has asked it (the requests counted), or lists nothing (exit 0).
            asked = stub.requests
            self.run("churn model list (MLflow REST API)", "churn", "model", "list", expect=(0, 3),
                     MLFLOW_TRACKING_URI=stub.url)
            if stub.requests == asked:
                raise Failed("step 'churn model list (MLflow REST API)' sent no request to the stand-in")
        finally:
            stub.shutdown()
            stub.server_close()
        # MongoDB's client as the nightly job and `churn risk top --from mongo` use it, up to the
        # server selection: nothing listens on port 1, so it ends as an outage (exit 1, after
        # the retries, about 20 s). What runs before and while connecting is what gets recorded.
        self.run("churn risk top --from mongo (MongoDB unreachable)", "churn", "risk", "top", "--from", "mongo",
                 "--date", RUN_DATE, expect=(1,), saying="UnavailableService", MONGODB_URI="mongodb://127.0.0.1:1/")
        self.serve()

    def serve(self) -> None:
        """`serve` on a free port: the SageMaker contract's requests, then SIGTERM."""
        port = free_port()
        env = {**self.env, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
               "PROMETHEUS_MULTIPROC_DIR": str(self.work / "prometheus")}
        log = (self.work / "serve.log").open("w")
        process = subprocess.Popen(["serve"], cwd=self.work, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        try:
            while not self._get(f"{base}/ping"):
                if process.poll() is not None or time.monotonic() - started > 300:
                    raise Failed(f"step 'serve': /ping never answered 200:\n{self._tail()}")
                time.sleep(0.2)
            with (self.work / "requests.csv").open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            instances = [{k: _number(v) for k, v in row.items()} for row in rows]
            self._post(f"{base}/invocations", json.dumps({"instances": instances}).encode(), "application/json",
                       "application/json", 200)
            self._post(f"{base}/invocations", (self.work / "requests.csv").read_bytes(), "text/csv", "text/csv", 200)
            self._post(f"{base}/invocations", b'{"instances": [{"tenure": "many"}]}', "application/json",
                       "application/json", 400)
            if not self._get(f"{base}/metrics"):
                raise Failed("step 'serve': /metrics did not answer 200")
            say(f"serve: /ping, /invocations, /metrics ok in {time.monotonic() - started:.1f} s")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -9
            log.close()
        self.sources |= loaded_sources((self.work / "serve.log").read_text(errors="replace"))
        if code != 0:
            raise Failed(f"step 'serve' exited {code} after SIGTERM:\n{self._tail()}")

    def _tail(self) -> str:
        return _tail((self.work / "serve.log").read_text(errors="replace"))

    @staticmethod
    def _get(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _post(self, url: str, body: bytes, content_type: str, accept: str, status: int) -> None:
        request = urllib.request.Request(url, body, {"Content-Type": content_type, "Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                got = answer.status
        except urllib.error.HTTPError as err:
            got = err.code
        if got != status:
            raise Failed(f"step 'serve': POST {content_type} answered {got}, expected {status}:\n{self._tail()}")

    def recorded(self) -> set[Path]:
        """The loaded files as the interpreter named them (its .pyc goes beside that name, even
        when the file is a link, as Debian's sitecustomize.py is in the stand-in base)."""
        return {Path(p) for p in self.sources if Path(p).is_file()}


def _tail(output: str) -> str:
    """The last lines of a step's output that are not `python -v` chatter."""
    lines = [line for line in output.strip().splitlines() if not line.startswith(("# ", "import "))]
    return "\n".join(lines[-15:])


def _number(value: str) -> object:
    """CSV text back to the JSON type a client would send."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value or None


def compile_recorded(paths: set[Path], venv: Path, stdlib_root: Path) -> None:
    """A .pyc next to each recorded module of the environment; the stdlib's into stdlib_root."""
    venv = venv.absolute()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    counts = {"environment": 0, "stdlib": 0, "stdlib (already in the base)": 0}
    sizes = {"environment": 0, "stdlib": 0}
    for path in sorted(paths):
        cached = Path(importlib.util.cache_from_source(str(path)))
        if venv in path.parents:
            kind, target = "environment", cached
        elif stdlib in path.parents:
            if cached.is_file():
                counts["stdlib (already in the base)"] += 1
                continue
            kind, target = "stdlib", stdlib_root / cached.relative_to("/")
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        py_compile.compile(str(path), cfile=str(target), dfile=str(path), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        counts[kind] += 1
        sizes[kind] += target.stat().st_size
    say("compiled " + ", ".join(f"{counts[k]} {k} modules" + (f" ({sizes[k] / 2**20:.1f} MiB)" if k in sizes else "")
                                for k in counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, required=True, help="the environment the image ships")
    parser.add_argument("--stdlib-pyc-root", type=Path, required=True,
                        help="where the standard library's .pyc go (a tree mirroring /)")
    parser.add_argument("--list", type=Path, help="also write the recorded module files here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="churn-record-"))
    started = time.monotonic()
    try:
        run = Run(args.venv, work)
        run.all_steps()
        paths = run.recorded()
    except Failed as err:
        print(f"record-imports: FAILED {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"{len(paths)} module files imported, recorded in {time.monotonic() - started:.0f} s")
    if args.list:
        args.list.write_text("".join(f"{p}\n" for p in sorted(paths)))
    args.stdlib_pyc_root.mkdir(parents=True, exist_ok=True)
    compile_recorded(paths, args.venv, args.stdlib_pyc_root)


if __name__ == "__main__":
    main()
