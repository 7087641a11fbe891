"""Fixtures of the deployment tests: rendered kustomize overlays, computed once."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_helpers import K8S, OVERLAYS, render

Render = tuple[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize` output of the base and of every overlay, as parsed documents."""
    out = {"base": render(K8S / "base")}
    for overlay in OVERLAYS:
        out[overlay] = render(K8S / "overlays" / overlay)
    return out


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> Render:
    """(name, documents) of one deployable overlay."""
    return request.param, rendered[request.param]


@pytest.fixture(params=("base",) + OVERLAYS)
def any_render(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> Render:
    """(name, documents) of the base and of every overlay."""
    return request.param, rendered[request.param]
