"""The image, measured: size per layer (uncompressed and gzip-compressed) and cold start in the container.

    python bench/bench_image.py [--image churn:dev] [--build] [--repeat 3] [--against IMAGE]

Prints:
- every layer with the Dockerfile instruction that made it, its uncompressed tar size and
  its gzip -6 size (what a registry stores and a node pulls), and the totals, with and
  without the base image's layers;
- the estimate on the official base (what the Dockerfile adds plus the official image's
  listed size: it cannot be pulled here) against the budget of issue 9;
- what the environment holds: shared libraries, .py, the .pyc of the modules the build
  recorded as imported (scripts/record_imports.py) and how many modules keep only their .py;
  the largest packages;
- cold start, median of --repeat runs, each in a fresh container as Kubernetes runs it
  (UID 10001, read-only root): `churn --help` to exit, and `serve` (one worker, the model
  mounted at /opt/ml/model) from process start to the first `GET /ping` 200. Both with the
  shipped .pyc and as if none were shipped (PYTHONPYCACHEPREFIX pointing at an empty
  directory makes Python ignore them; the read-only root lets it write none), side by
  side in one run, so their ratio holds even on a busy machine. Also as CPU seconds (user +
  sys of every process of the command), which the machine's load barely moves: the figure to
  compare images by. `--against IMAGE` adds a column for another image (e.g. the one built
  before a change) in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import container_runtime  # noqa: E402
from container_runtime import RunSpec  # noqa: E402

MB = 1 << 20
NO_PYC = {"PYTHONPYCACHEPREFIX": "/tmp/no-pyc"}  # an empty, fresh tmpfs directory in the container
# python:3.11.14-slim-bookworm, linux/amd64, in MiB: `docker images` lists about 131 MB, Docker Hub
# about 42 MB compressed (Debian bookworm-slim 28 MB + CA certificates/tzdata 3.5 MB + Python 11 MB).
# Listed, not measured: no registry is reachable here (CI's image job measures it with Docker).
OFFICIAL_BASE_MIB = (125.0, 40.0)
BUDGET_MIB = (650.0, 220.0)  # issue 9: uncompressed, compressed


def small_model(root: Path) -> Path:
    """A small model in MLflow format (as /opt/ml/model holds it), trained here in seconds."""
    import pyarrow as pa

    from churn import generator, training
    from churn.adapters import model_format
    from churn.model import to_frame
    from churn.params import load_params
    from churn.validation import validate

    params = load_params(REPO / "params.yaml").with_overrides({"n_estimators": "60", "model.n_jobs": "1"})
    customers = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=3_000, seed=7)))
    splits = training.split(validate(customers, params.schema, require_label=True).clean, params)
    outcome = training.train(params, splits.train, splits.valid)
    path = root / "model"
    model_format.save(outcome.model, path, to_frame(splits.valid, params.schema),
                      {"reference_profile": outcome.reference_profile, "data_hash": "bench"})
    return path


def sizes(runtime: container_runtime.Runtime, image: str) -> None:
    layers = runtime.layers(image)
    # The base image's layers (one in the stand-in, four in the official image) come before the
    # runtime stage's first own layer, its apt-get install.
    base_layers = next((i for i, layer in enumerate(layers) if "libgomp1" in layer.created_by), 1)
    print(f"\n== layers of {image} ({runtime.name}); MB = MiB")
    print(f"{'uncompressed':>12} {'gzip -6':>8}  instruction")
    for layer in layers:
        if layer.size < 64 * 1024:
            continue
        print(f"{layer.size / MB:>12.1f} {layer.compressed / MB:>8.1f}  {layer.created_by}")
    total = sum(layer.size for layer in layers)
    packed = sum(layer.compressed for layer in layers)
    own = layers[base_layers:]
    print(f"{total / MB:>12.1f} {packed / MB:>8.1f}  TOTAL")
    added = (sum(x.size for x in own) / MB, sum(x.compressed for x in own) / MB)
    print(f"{added[0]:>12.1f} {added[1]:>8.1f}  without the base layer (what the Dockerfile adds)")
    estimate = (added[0] + OFFICIAL_BASE_MIB[0], added[1] + OFFICIAL_BASE_MIB[1])
    verdict = ["within" if e <= b else f"{e - b:.0f} over" for e, b in zip(estimate, BUDGET_MIB, strict=True)]
    print(f"{estimate[0]:>12.1f} {estimate[1]:>8.1f}  on the official base (+{OFFICIAL_BASE_MIB[0]:.0f}/"
          f"{OFFICIAL_BASE_MIB[1]:.0f} listed): budget {BUDGET_MIB[0]:.0f}/{BUDGET_MIB[1]:.0f}: "
          f"{verdict[0]} / {verdict[1]}")
    with runtime.rootfs(image) as root:
        environment(root / "opt/venv/lib/python3.11/site-packages")


def environment(site: Path) -> None:
    """What the venv layer holds, by kind, and its largest packages."""
    kinds = {"shared libraries": 0, ".py": 0, ".pyc": 0, "other": 0}
    packages: dict[str, int] = {}
    modules = compiled = 0
    for path in site.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        name = path.name
        if name.endswith(".pyc"):
            kinds[".pyc"] += size
        elif name.endswith(".py"):
            kinds[".py"] += size
            modules += 1
            compiled += (path.parent / "__pycache__" / f"{path.stem}.cpython-311.pyc").is_file()
        elif ".so" in name:
            kinds["shared libraries"] += size
        else:
            kinds["other"] += size
        top = path.relative_to(site).parts[0].split(".libs")[0].split("-")[0]
        packages[top] = packages.get(top, 0) + size
    print("site-packages: " + ", ".join(f"{k} {v / MB:.1f}" for k, v in kinds.items()) + " MiB")
    print(f"byte-code: {compiled} of {modules} modules have a .pyc (the ones train/score/serve import, recorded at "
          f"build time); {modules - compiled} keep their .py only")
    largest = sorted(packages.items(), key=lambda kv: -kv[1])[:12]
    print("largest: " + ", ".join(f"{k} {v / MB:.0f}" for k, v in largest) + " MiB")


# Run inside the container: the command as a child, `serve` until its first /ping 200 and then
# drained by SIGTERM; prints the CPU seconds (user + sys) of the child and everything it forked
# and reaped (gunicorn's worker). CPU time, unlike wall time, barely moves with the machine's load.
CPU_PROBE = r"""
import json, os, resource, signal, subprocess, sys, time, urllib.request
command = sys.argv[1:]
if command == ["serve"]:
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%s/ping" % os.environ["SAGEMAKER_BIND_TO_PORT"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    child.wait(120)
else:
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(usage.ru_utime + usage.ru_stime))
"""


def serve_env(port: int) -> dict[str, str]:
    return {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus", "CHURN_THREADS": "1"}


def cpu_seconds(runtime: container_runtime.Runtime, image: str, command: list[str], opt_ml: Path,
                env: dict[str, str]) -> float:
    """CPU seconds the command's processes spend (for serve: until /ping answers 200, then draining)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = RunSpec(image, ["python", "-c", CPU_PROBE, *command], mounts={str(opt_ml): "/opt/ml"},
                   env={**serve_env(port), **env})
    done = runtime.run(spec, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def help_seconds(runtime: container_runtime.Runtime, image: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = runtime.run(RunSpec(image, ["churn", "--help"], env=env), timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"churn --help failed: {done.stderr[-2000:]}")
    return elapsed


def ping_seconds(runtime: container_runtime.Runtime, image: str, opt_ml: Path, env: dict[str, str]) -> float:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = RunSpec(image, ["serve"], mounts={str(opt_ml): "/opt/ml"}, env={**serve_env(port), **env})
    started = time.perf_counter()
    container = runtime.start(spec)
    try:
        while time.perf_counter() - started < 300:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit(f"/ping never answered 200:\n{container.output()[-2000:]}")
    finally:
        container.signal(signal.SIGTERM)
        try:
            container.wait(60)
        finally:
            container.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=os.environ.get("IMAGE", "churn:dev"))
    parser.add_argument("--build", action="store_true", help="build the image first (scripts/build-image.sh)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", metavar="IMAGE",
                        help="also time this image (e.g. one built before a change), interleaved in the same run")
    args = parser.parse_args()

    runtime = container_runtime.detect()
    if args.build:
        started = time.perf_counter()
        runtime.build(args.image, REPO)
        print(f"build: {time.perf_counter() - started:.0f} s")
    print(f"machine: {os.cpu_count()} cores, shared with other work (compare within this run, not across runs)")
    sizes(runtime, args.image)

    work = Path(tempfile.mkdtemp(prefix="bench-image-"))
    try:
        opt_ml = work / "opt_ml"
        opt_ml.mkdir()
        shutil.copytree(small_model(work), opt_ml / "model")
        for dirpath, dirnames, filenames in os.walk(opt_ml):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, 10001, 10001)
        print(f"\n== cold start in the container, median of {args.repeat} (seconds)")
        columns = [(args.image, {}, "with .pyc"), (args.image, NO_PYC, "no .pyc")]
        if args.against:
            columns.append((args.against, {}, "--against"))
            print(f"--against: {args.against} with its own .pyc")
        print(f"{'':<38}" + "".join(f"{title:>11}" for _, _, title in columns) + f"{'no/with':>9}")
        for label, measure in (
            ("churn --help", lambda image, env: help_seconds(runtime, image, env)),
            ("serve: start -> /ping 200 (1 worker)",
             lambda image, env: ping_seconds(runtime, image, opt_ml, env)),
            ("churn --help, CPU s", lambda image, env: cpu_seconds(runtime, image, ["churn", "--help"], opt_ml, env)),
            ("serve to /ping 200 + drain, CPU s",
             lambda image, env: cpu_seconds(runtime, image, ["serve"], opt_ml, env)),
        ):
            times: list[list[float]] = [[] for _ in columns]
            for _ in range(args.repeat):  # interleaved, so every column sees the same machine load
                for seconds, (image, env, _) in zip(times, columns, strict=True):
                    seconds.append(measure(image, env))
            medians = [statistics.median(t) for t in times]
            print(f"{label:<38}" + "".join(f"{m:>11.2f}" for m in medians) + f"{medians[1] / medians[0]:>9.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
