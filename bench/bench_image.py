"""The image, measured: size per layer (uncompressed and gzip-compressed) and cold start in the container.

    python bench/bench_image.py [--image churn:dev] [--build] [--repeat 3]

Prints:
- every layer with the Dockerfile instruction that made it, its uncompressed tar size and
  its gzip -6 size (what a registry stores and a node pulls), and the totals, with and
  without the base image's layers;
- what the shipped .pyc files weigh (the byte-code decision);
- cold start, median of --repeat runs, each in a fresh container as Kubernetes runs it
  (UID 10001, read-only root): `churn --help` to exit, and `serve` (one worker, the model
  mounted at /opt/ml/model) from process start to the first `GET /ping` 200. Both with the
  shipped .pyc and as if none were shipped (PYTHONPYCACHEPREFIX pointing at an empty
  directory makes Python ignore them; the read-only root lets it write none), side by
  side in one run, so their ratio holds even on a busy machine.
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
    base_layers = 1  # the base image is one layer (the official slim image has a few; see docs)
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
    print(f"{sum(x.size for x in own) / MB:>12.1f} {sum(x.compressed for x in own) / MB:>8.1f}  "
          "without the base layer (what the Dockerfile adds)")
    with runtime.rootfs(image) as root:
        site = root / "opt/venv/lib/python3.11/site-packages"
        pyc = sum(p.stat().st_size for p in site.rglob("*.pyc"))
        py = sum(p.stat().st_size for p in site.rglob("*.py"))
        so = sum(p.stat().st_size for p in site.rglob("*.so*") if p.is_file() and not p.is_symlink())
        print(f"site-packages: shared libraries {so / MB:.1f}, .py {py / MB:.1f}, .pyc {pyc / MB:.1f} MB")


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
    spec = RunSpec(image, ["serve"], mounts={str(opt_ml): "/opt/ml"},
                   env={"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                        "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus", "CHURN_THREADS": "1", **env})
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
        print(f"{'':<34}{'with .pyc':>10}{'no .pyc':>10}{'ratio':>7}")
        for label, measure in (
            ("churn --help", lambda env: help_seconds(runtime, args.image, env)),
            ("serve: start -> /ping 200 (1 worker)", lambda env: ping_seconds(runtime, args.image, opt_ml, env)),
        ):
            shipped, none = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                shipped.append(measure({}))
                none.append(measure(NO_PYC))
            a, b = statistics.median(shipped), statistics.median(none)
            print(f"{label:<34}{a:>10.2f}{b:>10.2f}{b / a:>7.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
