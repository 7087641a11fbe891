"""Settings from the environment (churn.settings): defaults, casting and start-up checks."""

from __future__ import annotations

from dataclasses import fields

import pytest

from churn.errors import ConfigError
from churn.settings import ENV, Settings

# A valid, non-default value for every variable, and what the field then holds.
VALID = {
    "CHURN_PARAMS": ("/tmp/other-params.yaml", "/tmp/other-params.yaml"),
    "CHURN_DATA_DIR": ("/data/churn", "/data/churn"),
    "MONGODB_URI": ("mongodb://db.example:27017", "mongodb://db.example:27017"),
    "MONGODB_DATABASE": ("crm", "crm"),
    "CUSTOMERS_COLLECTION": ("clients", "clients"),
    "RISK_COLLECTION": ("risk", "risk"),
    "QUARANTINE_COLLECTION": ("bad_rows", "bad_rows"),
    "MLFLOW_TRACKING_URI": ("http://mlflow:5000", "http://mlflow:5000"),
    "CHURN_MODEL_NAME": ("churn_v2", "churn_v2"),
    "CHURN_MODEL_URI": ("models:/churn@staging", "models:/churn@staging"),
    "RISK_TABLE_URI": ("s3://bucket/risk", "s3://bucket/risk"),
    "AWS_ENDPOINT_URL_S3": ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
    "AWS_REGION": ("eu-west-1", "eu-west-1"),
    "PUSHGATEWAY_URL": ("http://pushgateway:9091", "http://pushgateway:9091"),
    "METRICS_TEXTFILE": ("/var/metrics/churn.prom", "/var/metrics/churn.prom"),
    "SCORE_SHARD_COUNT": ("4", 4),
    "JOB_COMPLETION_INDEX": ("0", 0),
    "LOG_FORMAT": ("json", "json"),
    "SAGEMAKER_BASE_DIR": ("/tmp/opt-ml", "/tmp/opt-ml"),
    "SAGEMAKER_BIND_TO_PORT": ("9090", 9090),
    "SAGEMAKER_MODEL_SERVER_WORKERS": ("3", 3),
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": ("120", 120),
    "MODEL_POLL_SECONDS": ("2.5", 2.5),
    "CHURN_THREADS": ("4", 4),
    "CHURN_WORK_DIR": ("/tmp/churn-work", "/tmp/churn-work"),
    "CHURN_ENVIRONMENT": ("churn-staging", "churn-staging"),
}


def test_defaults_with_an_empty_environment_run_on_a_laptop() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.mongodb_uri is None and settings.mlflow_tracking_uri is None and settings.pushgateway_url is None
    assert (settings.shard_count, settings.shard_index) == (1, 0)
    assert (settings.port, settings.timeout, settings.log_format) == (8080, 60, "auto")
    assert settings.model_name == "churn"
    assert settings.registry_model_uri == "models:/churn@production"
    assert settings.tracking_uri.startswith("sqlite:///")
    assert str(settings.opt_ml) == "/opt/ml"


def test_empty_variables_count_as_unset() -> None:
    assert Settings.from_env({"SCORE_SHARD_COUNT": "", "MONGODB_URI": "", "LOG_FORMAT": ""}) == Settings()


def test_every_env_var_maps_to_a_settings_field() -> None:
    names = {f.name for f in fields(Settings)}
    assert set(ENV.values()) <= names
    assert len(set(ENV.values())) == len(ENV), "two variables feed one field"
    assert set(VALID) <= set(ENV)


@pytest.mark.parametrize("var", sorted(ENV))
def test_every_env_var_is_read_into_its_field_or_rejected_by_name(var: str) -> None:
    """Generic over ENV (so variables added later are covered): a typed value reaches the field."""
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = str(kinds[ENV[var]])
    text, expected = (
        ("12345", 12345)
        if kind.startswith("int")
        else ("12345.5", 12345.5)
        if kind.startswith("float")
        else ("zz-test", "zz-test")
    )
    try:
        settings = Settings.from_env({var: text})
    except ConfigError as err:
        assert var in str(err)
    else:
        assert getattr(settings, ENV[var]) == expected


@pytest.mark.parametrize("var", sorted(VALID))
def test_each_env_var_sets_its_field_with_its_type(var: str) -> None:
    text, expected = VALID[var]
    env = {var: text}
    if var == "JOB_COMPLETION_INDEX":
        env = {"SCORE_SHARD_COUNT": "3", var: "2"}
        expected = 2
    settings = Settings.from_env(env)
    value = getattr(settings, ENV[var])
    assert value == expected and type(value) is type(expected)
    assert value != getattr(Settings(), ENV[var])


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_MODEL_NAME", "from_os_environ")
    assert Settings.from_env().model_name == "from_os_environ"


def test_numbers_are_read_with_surrounding_spaces() -> None:
    assert Settings.from_env({"SCORE_SHARD_COUNT": " 3 ", "MODEL_POLL_SECONDS": " 1.5"}).shard_count == 3


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SCORE_SHARD_COUNT": "abc"}, "SCORE_SHARD_COUNT='abc'"),
        ({"SCORE_SHARD_COUNT": "2.0"}, "SCORE_SHARD_COUNT='2.0'"),
        ({"SCORE_SHARD_COUNT": "0"}, "SCORE_SHARD_COUNT=0"),
        ({"SCORE_SHARD_COUNT": "2", "JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX=2"),
        ({"JOB_COMPLETION_INDEX": "-1"}, "JOB_COMPLETION_INDEX=-1"),
        ({"JOB_COMPLETION_INDEX": "one"}, "JOB_COMPLETION_INDEX='one'"),
        ({"MONGODB_URI": "http://x"}, "MONGODB_URI='http://x'"),
        ({"MONGODB_URI": "localhost:27017"}, "MONGODB_URI='localhost:27017'"),
        ({"PUSHGATEWAY_URL": "pushgateway:9091"}, "PUSHGATEWAY_URL='pushgateway:9091'"),
        ({"PUSHGATEWAY_URL": "ftp://pushgateway"}, "PUSHGATEWAY_URL='ftp://pushgateway'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "SAGEMAKER_BIND_TO_PORT=70000"),
        ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT='http'"),
        ({"MODEL_POLL_SECONDS": "-1"}, "MODEL_POLL_SECONDS=-1"),
        ({"MODEL_POLL_SECONDS": "soon"}, "MODEL_POLL_SECONDS='soon'"),
        ({"CHURN_THREADS": "two"}, "CHURN_THREADS='two'"),
        ({"CHURN_ENVIRONMENT": "prod/eu"}, "CHURN_ENVIRONMENT='prod/eu'"),
        ({"CHURN_ENVIRONMENT": "-staging"}, "CHURN_ENVIRONMENT='-staging'"),
    ],
)
def test_bad_value_raises_config_error_naming_variable_and_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0"), ("SAGEMAKER_MODEL_SERVER_WORKERS", "-1"), ("CHURN_THREADS", "0")],
)
def test_bad_timeout_workers_or_threads_names_the_variable_and_value(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({var: value})
    assert f"{var}={value}" in str(err.value)


def test_model_poll_seconds_nan_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="MODEL_POLL_SECONDS"):
        Settings.from_env({"MODEL_POLL_SECONDS": "nan"})


def test_mongodb_uri_schemes_are_accepted() -> None:
    assert Settings.from_env({"MONGODB_URI": "mongodb+srv://u:p@cluster.example"}).mongodb_uri.startswith("mongodb+srv")
    assert Settings.from_env({"PUSHGATEWAY_URL": "https://pg.example"}).pushgateway_url == "https://pg.example"


def test_password_in_a_mongo_uri_is_redacted_in_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"MONGODB_URI": "http://admin:s3cretPass@db.example:27017/churn"})
    message = str(err.value)
    assert "s3cretPass" not in message
    assert "MONGODB_URI='http://admin:***@db.example:27017/churn'" in message


def test_redaction_only_touches_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"MONGODB_URI": "http://user:p@host/p"})
    assert "MONGODB_URI='http://user:***@host/p'" in str(err.value)


def test_overrides_beat_the_environment() -> None:
    env = {"SCORE_SHARD_COUNT": "4", "LOG_FORMAT": "text", "CHURN_MODEL_NAME": "from_env"}
    settings = Settings.from_env(env, shard_count=2, log_format="json", model_name=None)
    assert (settings.shard_count, settings.log_format) == (2, "json")
    assert settings.model_name == "from_env", "a None override (flag not given) keeps the env value"


def test_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT='yaml'"):
        Settings.from_env({}, log_format="yaml")
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX=5"):
        Settings.from_env({"SCORE_SHARD_COUNT": "2"}, shard_index=5)


def test_with_returns_a_changed_copy() -> None:
    settings = Settings.from_env({})
    changed = settings.with_(data_dir="/elsewhere")
    assert changed.data_dir == "/elsewhere" and settings.data_dir == "data"


def test_derived_locations_follow_the_settings() -> None:
    settings = Settings.from_env({"CHURN_DATA_DIR": "/srv/churn", "CHURN_MODEL_URI": "/opt/ml/model"})
    assert settings.risk_uri == "/srv/churn/risk"
    assert settings.textfile == "/srv/churn/metrics/churn_scoring.prom"
    assert settings.registry_model_uri == "/opt/ml/model"
    remote = Settings.from_env({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert remote.tracking_uri == "http://127.0.0.1:5000" and remote.artifact_location is None
    local = Settings.from_env({})
    assert local.artifact_location is not None and local.artifact_location.endswith("mlartifacts")


@pytest.mark.parametrize("text, expected", [
    ("http://ops:hunter2@mlflow:5000/api", "http://ops:***@mlflow:5000/api"),
    ("mongodb+srv://app:p%40ss@cluster.example/churn?retryWrites=true",
     "mongodb+srv://app:***@cluster.example/churn?retryWrites=true"),
    ("mongodb://app:pw@h1:27017,h2:27017/db", "mongodb://app:***@h1:27017,h2:27017/db"),
    ("failed: API request to https://u:sekret@h/x failed; retry https://u:sekret@h/y",
     "failed: API request to https://u:***@h/x failed; retry https://u:***@h/y"),
    ("https://pg.example/metrics?token=abc123&job=x", "https://pg.example/metrics?token=***&job=x"),
    ("http://host:9091/no/credentials", "http://host:9091/no/credentials"),
    ("ratio=3 and a plain sentence", "ratio=3 and a plain sentence"),
])
def test_redact_hides_every_password_in_a_text(text: str, expected: str) -> None:
    from churn.settings import redact

    assert redact(text) == expected


def test_a_bad_pushgateway_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"PUSHGATEWAY_URL": "ftp://ops:hunter2@pg:9091"})
    assert "hunter2" not in str(err.value) and "ftp://ops:***@pg:9091" in str(err.value)


def test_the_default_tracking_store_does_not_depend_on_the_current_directory(tmp_path, monkeypatch) -> None:
    from churn.settings import project_root

    here = Settings.from_env({}).tracking_uri
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).tracking_uri == here
    root = project_root()
    assert root is not None and here == f"sqlite:///{root / 'mlflow.db'}", "a checkout keeps its store at its root"
    assert (root / "dvc.yaml").is_file()


def test_without_a_checkout_the_store_sits_beside_the_data_dir(tmp_path, monkeypatch) -> None:
    from churn import settings as settings_module

    monkeypatch.setattr(settings_module, "project_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"CHURN_DATA_DIR": "/srv/churn/data"})
    assert settings.tracking_uri == "sqlite:////srv/churn/mlflow.db"
    assert settings.artifact_location == "/srv/churn/mlartifacts"


@pytest.mark.parametrize("text", ['["contract"]', "{contract: 1", '"Two year"'])
def test_a_customers_filter_that_is_not_a_json_object_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="CUSTOMERS_FILTER=.* is not a JSON object"):
        _ = Settings(customers_filter=text).customers_query


def test_the_customers_filter_is_the_query_it_spells_and_empty_when_unset() -> None:
    assert Settings(customers_filter='{"contract": "Two year"}').customers_query == {"contract": "Two year"}
    assert Settings().customers_query == {}
