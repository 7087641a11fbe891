"""The model holder: loads when a new version appears, keeps the old one when a new one is bad."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from churn.errors import ModelNotReady, UntrustedModel
from churn.model_source import LoadedModel
from churn_serve.model_holder import ModelHolder


class FakeRegistry:
    """A pollable source whose current version and models the test sets."""

    description = "fake registry"
    pollable = True

    def __init__(self, models: dict[str, Any]) -> None:
        self.models = models
        self.version: str | None = None
        self.loads = 0
        self.released: list[str] = []
        self.unreachable = False

    def latest(self) -> str | None:
        if self.unreachable:
            raise ConnectionError("registry down")
        return self.version

    def load(self) -> LoadedModel:
        self.loads += 1
        model = self.models[self.version]  # type: ignore[index]
        if isinstance(model, Exception):
            raise model
        return dataclasses.replace(model, version=self.version)

    def release(self, model: LoadedModel) -> None:
        self.released.append(model.version)


def skewed(model: LoadedModel) -> LoadedModel:
    """Loads, but its compiled imputation disagrees with its pipeline: fails the probe."""
    return dataclasses.replace(model, compiled=dataclasses.replace(model.compiled, fill=model.compiled.fill + 1e3))


@pytest.fixture
def source(loaded_model: LoadedModel) -> FakeRegistry:
    return FakeRegistry({"1": loaded_model, "2": loaded_model, "3": skewed(loaded_model),
                         "4": OSError("download failed"),
                         "5": UntrustedModel("model 'churn' version 5: its files changed since registration")})


def test_nothing_to_serve_means_not_ready(source: FakeRegistry) -> None:
    holder = ModelHolder(source, poll_seconds=1)
    assert holder.refresh() is False and not holder.ready
    with pytest.raises(ModelNotReady):
        holder.current()


def test_a_new_version_is_swapped_in_and_the_old_one_released(source: FakeRegistry) -> None:
    swapped: list[str] = []
    holder = ModelHolder(source, poll_seconds=1, on_swap=lambda m: swapped.append(m.loaded.version))
    source.version = "1"
    assert holder.refresh() is True and holder.current().loaded.version == "1"
    assert holder.refresh() is False and source.loads == 1, "an unchanged alias must not reload"
    source.version = "2"
    assert holder.refresh() is True and holder.current().loaded.version == "2"
    assert swapped == ["1", "2"] and source.released == ["1"]


def test_a_model_that_fails_its_probe_is_refused_once_and_the_old_one_serves(source: FakeRegistry) -> None:
    holder = ModelHolder(source, poll_seconds=1)
    source.version = "1"
    holder.refresh()
    source.version = "3"
    assert holder.refresh() is False and holder.current().loaded.version == "1"
    loads = source.loads
    assert holder.refresh() is False and source.loads == loads, "a refused version is not downloaded again"


def test_load_failures_and_an_unreachable_registry_keep_the_old_model(source: FakeRegistry) -> None:
    holder = ModelHolder(source, poll_seconds=1)
    source.version = "1"
    holder.refresh()
    source.version = "4"
    assert holder.refresh() is False and holder.current().loaded.version == "1"
    source.unreachable = True
    assert holder.refresh() is False and holder.current().loaded.version == "1"


def test_an_untrusted_version_is_refused_once_and_never_downloaded_again(
    source: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(source, poll_seconds=1)
    source.version = "1"
    holder.refresh()
    source.version = "5"

    assert holder.refresh() is False and holder.current().loaded.version == "1"
    loads = source.loads
    assert holder.refresh() is False and source.loads == loads, "an untrusted version is not downloaded again"
    refused = [r for r in caplog.records if "untrusted" in r.getMessage()]
    assert len(refused) == 1 and "changed since registration" in refused[0].reason  # type: ignore[attr-defined]


def test_an_untrusted_first_model_leaves_the_worker_unready(source: FakeRegistry) -> None:
    holder = ModelHolder(source, poll_seconds=1)
    source.version = "5"

    assert holder.refresh() is False and not holder.ready
    with pytest.raises(ModelNotReady):
        holder.current()
