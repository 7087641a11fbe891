"""The lock files and what they were compiled from (used by scripts/lock.sh and the tests).

`requirements.lock` pins the runtime (setup.cfg install_requires) with hashes: the image
installs exactly it. `requirements-dev.lock` pins the same runtime plus the [test] and
[pipeline] extras: CI's install. Each file records a digest of the setup.cfg entries it was
compiled from, so a test can tell, offline, that setup.cfg changed after the last lock.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
DEV_EXTRAS = ("pipeline", "test")
DIGEST_PREFIX = "# setup.cfg digest: "
REFRESH_COMMAND = "bash scripts/lock.sh"


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def requirements(setup_cfg: Path = REPO / "setup.cfg") -> dict[str, list[str]]:
    """install_requires and the extras of setup.cfg, as written (comments dropped)."""
    cfg = configparser.ConfigParser(inline_comment_prefixes=None)
    cfg.read(setup_cfg)
    found = {"install_requires": _lines(cfg["options"]["install_requires"])}
    for extra, value in cfg["options.extras_require"].items():
        found[f"extra:{extra}"] = _lines(value)
    found["python_requires"] = [cfg["options"]["python_requires"].strip()]
    return found


def digest(which: str, setup_cfg: Path = REPO / "setup.cfg") -> str:
    """sha256 of the setup.cfg entries a lock file is compiled from ('runtime' or 'dev')."""
    reqs = requirements(setup_cfg)
    keys = ["install_requires", "python_requires"]
    if which == "dev":
        keys += [f"extra:{extra}" for extra in DEV_EXTRAS]
    elif which != "runtime":
        raise ValueError(f"unknown lock {which!r}")
    canonical = json.dumps({k: sorted(reqs[k]) for k in keys}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, Pin]:
    """`name==version` entries of a pip-format lock file with their `--hash` options."""
    text = lock.read_text().replace("\\\n", " ")
    found: dict[str, Pin] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line.strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if not match:
            continue
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        name = canonical_name(match.group(1))
        found[name] = Pin(name, match.group(3), hashes)
    return found


def recorded_digest(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX):].strip()
    return None


def stamp(lock: Path, which: str) -> None:
    """Insert (or replace) the digest line right after the tool's header comments."""
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(DIGEST_PREFIX)]
    at = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    lines.insert(at, f"{DIGEST_PREFIX}{digest(which)}")
    lock.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    # python scripts/lockfile.py stamp runtime|dev FILE
    if len(sys.argv) != 4 or sys.argv[1] != "stamp":
        sys.exit("usage: lockfile.py stamp runtime|dev FILE")
    stamp(Path(sys.argv[3]), sys.argv[2])
