"""Each CronJob's exact command (args and environment from the rendered production overlay)
runs on a read-only working directory, as the pod's read-only root filesystem makes it,
against the real test servers; and a job pointed at an unwritable path fails once, with
exit code 3 and a reason that names the path and the setting to change."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pod_sandbox import ContainerSpec, Sandbox, container_spec, render
from prometheus_client import delete_from_gateway
from prometheus_client.parser import text_string_to_metric_families

import services

OVERLAY = "production"
RUN_DATE = "2024-03-31"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(OVERLAY)


@pytest.fixture(scope="module")
def namespace(docs: list[dict[str, Any]]) -> str:
    (cron,) = [d for d in docs if d["kind"] == "CronJob" and d["metadata"]["name"] == "churn-scoring"]
    return str(cron["metadata"]["namespace"])


@pytest.fixture(scope="module")
def cluster(
    docs: list[dict[str, Any]],
    mongo_server: services.MongoServer,
    mlflow_server: services.MlflowServer,
    pushgateway_server: services.PushgatewayServer,
    s3_server: services.S3Server,
) -> Iterator[dict[str, str]]:
    """The test servers standing in for the cluster's, seeded as the jobs expect them.

    Returns the variables that point the jobs at them: the Secret's MongoDB URI, the
    in-cluster service addresses, and S3 keys standing in for the IRSA role.
    """
    import boto3
    import pymongo

    from churn import generator

    spec = container_spec(docs, "CronJob", "churn-training")
    database = spec.env["MONGODB_DATABASE"]
    bucket = urllib.parse.urlparse(spec.env["RISK_TABLE_URI"]).netloc
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.uri)
    customers = generator.GeneratorConfig(n_customers=1500, seed=5, labelled_share=0.8)
    for chunk in generator.generate(customers):
        client[database][spec.env.get("CUSTOMERS_COLLECTION", "customers")].insert_many(generator.to_documents(chunk))
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
                      aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key)
    s3.create_bucket(Bucket=bucket)
    yield {
        "MONGODB_URI": mongo_server.uri,
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "PUSHGATEWAY_URL": pushgateway_server.url,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    client.drop_database(database)
    client.close()


def _secrets_supplied(spec: ContainerSpec, cluster: dict[str, str]) -> None:
    """Every required Secret reference of the container is one the test supplies."""
    required = {var for var, (_, optional) in spec.secret_env.items() if not optional}
    assert required <= set(cluster), f"no stand-in for the Secret values {required - set(cluster)}"


@pytest.fixture
def gateway_left_as_found(namespace: str, pushgateway_server: services.PushgatewayServer) -> Iterator[None]:
    """Delete the scoring job's Pushgateway group afterwards: other tests read the job's shard 0."""
    yield
    group = {"namespace": namespace, "shard": "0"}
    delete_from_gateway(pushgateway_server.url, job="churn_scoring", grouping_key=group)


@pytest.fixture
def sandbox_for() -> Iterator[Any]:
    made: list[Sandbox] = []

    def make(spec: ContainerSpec) -> Sandbox:
        made.append(Sandbox(spec.mounts))
        return made[-1]

    yield make
    for sandbox in made:
        sandbox.remove()


def _outcome(result: Any) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"


def test_the_sandbox_refuses_writes_to_the_working_directory(docs: list[dict[str, Any]], sandbox_for: Any) -> None:
    """Guard: what the jobs below survive is a working directory that really cannot be written."""
    spec = container_spec(docs, "CronJob", "churn-training")
    sandbox = sandbox_for(spec)
    env = sandbox.environment(spec, {})
    probe = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x')"

    into_workdir = sandbox.run(["python", "-c", probe, "data"], env, timeout=60)
    into_tmp = sandbox.run(["python", "-c", probe, f"{sandbox.volumes['/tmp']}/x"], env, timeout=60)

    assert into_workdir.returncode != 0 and "PermissionError" in into_workdir.stderr
    assert into_tmp.returncode == 0, _outcome(into_tmp)


@pytest.fixture(scope="module")
def training_run(docs: list[dict[str, Any]], cluster: dict[str, str]) -> Iterator[tuple[Sandbox, Any]]:
    """The training CronJob's command, run once for the module: (its sandbox, its result)."""
    spec = container_spec(docs, "CronJob", "churn-training")
    _secrets_supplied(spec, cluster)
    sandbox = Sandbox(spec.mounts)
    try:
        yield sandbox, sandbox.run(spec.argv, sandbox.environment(spec, cluster), timeout=900)
    finally:
        sandbox.remove()


def test_training_cronjob_command_trains_on_a_read_only_root(training_run: tuple[Sandbox, Any]) -> None:
    sandbox, result = training_run

    assert result.returncode == 0, _outcome(result)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["version"], record
    assert not any(path.startswith("workdir/") for path in sandbox.written())


def test_scoring_cronjob_command_scores_on_a_read_only_root(
    docs: list[dict[str, Any]],
    cluster: dict[str, str],
    namespace: str,
    sandbox_for: Any,
    training_run: tuple[Sandbox, Any],
    pushgateway_server: services.PushgatewayServer,
    gateway_left_as_found: None,
) -> None:
    """Shard 0 of the Indexed Job (Kubernetes sets JOB_COMPLETION_INDEX), scoring with the trained model."""
    if training_run[1].returncode != 0:
        pytest.fail("needs the production model of the training CronJob's command, which failed (test above)")
    spec = container_spec(docs, "CronJob", "churn-scoring")
    _secrets_supplied(spec, cluster)
    sandbox = sandbox_for(spec)
    env = {**sandbox.environment(spec, cluster), "JOB_COMPLETION_INDEX": "0"}

    result = sandbox.run([*spec.argv, "--run-date", RUN_DATE], env, timeout=900)

    assert result.returncode == 0, _outcome(result)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows_written"] > 0 and summary["shard"] == 0, summary
    assert not any(path.startswith("workdir/") for path in sandbox.written())
    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    groups = {
        (sample.labels.get("namespace"), sample.labels.get("shard"))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "churn_scoring_last_success_timestamp_seconds"
    }
    assert (namespace, "0") in groups, groups


def test_a_job_pointed_at_an_unwritable_directory_exits_3_naming_the_path_and_the_setting(
    docs: list[dict[str, Any]], cluster: dict[str, str], sandbox_for: Any
) -> None:
    """A read-only filesystem is configuration, not an outage: Kubernetes must not retry it."""
    spec = container_spec(docs, "CronJob", "churn-training")
    sandbox = sandbox_for(spec)
    env = {**sandbox.environment(spec, cluster), "CHURN_WORK_DIR": str(sandbox.workdir / "work")}

    result = sandbox.run(spec.argv, env, timeout=600)

    assert result.returncode == 3, _outcome(result)
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1, result.stdout[-3000:]
    reason = errors[0]["msg"]
    assert str(sandbox.workdir / "work") in reason and "CHURN_WORK_DIR" in reason, reason
    assert "\n" not in reason
