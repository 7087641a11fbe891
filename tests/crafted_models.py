"""Hostile model directories for the loading tests: each would run code if it were ever deserialized.

Every payload creates a marker directory when it runs, so a test can assert that nothing
ran (the marker is absent) and, with `prove_*`, that the payload is live.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import yaml


class Mkdir:
    """Pickled, this is a call to os.mkdir(path) that runs while unpickling."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


class Planted:
    """A type off every allow-list: skops calls its __setstate__ (creating the marker) when loading it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        os.makedirs(state["marker"], exist_ok=True)
        self.__dict__.update(state)


PLANTED_TYPE = f"{Planted.__module__}.Planted"


def edit_mlmodel(model: Path, change: Any) -> None:
    path = model / "MLmodel"
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec))


def pickle_model(source: Path, target: Path, marker: Path, fmt: str = "cloudpickle") -> Path:
    """A copy of `source` that declares `fmt` and ships a model.pkl whose unpickling creates `marker`."""
    shutil.copytree(source, target)
    (target / "model.pkl").write_bytes(pickle.dumps(Mkdir(marker)))

    def change(spec: dict[str, Any]) -> None:
        spec["flavors"]["sklearn"].update(serialization_format=fmt, pickled_model="model.pkl")
        spec["flavors"]["python_function"]["model_path"] = "model.pkl"
        if fmt == "default":  # no format at all: MLflow would read it as pickle
            del spec["flavors"]["sklearn"]["serialization_format"]

    edit_mlmodel(target, change)
    return target


def planted_skops_model(source: Path, target: Path, marker: Path) -> Path:
    """A copy of `source` whose skops file holds a Planted object, and whose MLmodel trusts it."""
    import skops.io as sio

    shutil.copytree(source, target)
    (target / "model.skops").write_bytes(sio.dumps(Planted(marker)))
    edit_mlmodel(target, lambda spec: spec["flavors"]["sklearn"]["skops_trusted_types"].append(PLANTED_TYPE))
    return target


def prove_pickle_runs(model: Path, marker: Path) -> None:
    """Unpickle the crafted file on purpose: the marker appears (the attack is real)."""
    pickle.loads((model / "model.pkl").read_bytes())
    assert marker.exists(), "the crafted pickle did not run"


def prove_skops_runs(model: Path, marker: Path) -> None:
    """Load the crafted skops file trusting what its MLmodel lists: the marker appears."""
    import skops.io as sio

    sio.load(model / "model.skops", trusted=[PLANTED_TYPE])
    assert marker.exists(), "the crafted skops file did not run"
