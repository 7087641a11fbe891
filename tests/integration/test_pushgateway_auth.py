"""A Pushgateway behind basic auth, given as PUSHGATEWAY_URL=http://user:password@host:port,
receives the job's metrics: the credentials go as an Authorization header (urllib cannot
open a URL that carries them), and without them the same gateway refuses the push."""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

import services
from churn.adapters.pushgateway import MetricsSink, RunMetrics

USER, PASSWORD = "pusher", "s3cret:with@odd/chars"


@pytest.fixture(scope="module")
def guarded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.PushgatewayServer]:
    server = services.start_pushgateway(tmp_path_factory.mktemp("guarded-pushgateway"), basic_auth=(USER, PASSWORD))
    yield server
    server.stop()


def _metrics(gateway: services.PushgatewayServer) -> str:
    request = urllib.request.Request(f"{gateway.url}/metrics")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def test_credentials_in_the_pushgateway_url_are_sent_as_basic_auth(
    guarded_gateway: services.PushgatewayServer,
) -> None:
    quoted = urllib.parse.quote(PASSWORD, safe="")
    url = guarded_gateway.url.replace("http://", f"http://{USER}:{quoted}@")
    assert MetricsSink(7, gateway=url).success(RunMetrics(rows_read=5, rows_scored=5, rows_written=5))
    assert 'churn_scoring_rows_written{instance="",job="churn_scoring",shard="7"} 5' in _metrics(guarded_gateway)


def test_a_guarded_pushgateway_refuses_a_push_without_credentials(
    guarded_gateway: services.PushgatewayServer,
) -> None:
    assert not MetricsSink(8, gateway=guarded_gateway.url).success(RunMetrics(rows_read=1))
    assert 'shard="8"' not in _metrics(guarded_gateway)
