"""One order to find the model, for score, serve and predict alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churn.errors import ConfigError, ModelNotFound
from churn.model_source import ModelLocation, locate
from churn.settings import Settings
from churn_jobs import clients


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"), **env})


def test_the_model_uri_comes_first_even_when_a_model_is_mounted(tmp_path: Path, model_dir: Path) -> None:
    shutil.copytree(model_dir, tmp_path / "opt-ml" / "model")
    assert locate(settings(tmp_path, CHURN_MODEL_URI="models:/other@staging")) == ModelLocation(
        "other", alias="staging")
    assert locate(settings(tmp_path, CHURN_MODEL_URI=f"file://{model_dir}")).path == model_dir


def test_a_mounted_model_comes_before_the_registry(tmp_path: Path, model_dir: Path) -> None:
    assert locate(settings(tmp_path)) == ModelLocation("churn", alias="production")
    (tmp_path / "opt-ml" / "model").mkdir(parents=True)
    assert locate(settings(tmp_path)).path is None, "an empty mount is not a model"
    shutil.copytree(model_dir, tmp_path / "opt-ml" / "model", dirs_exist_ok=True)
    assert locate(settings(tmp_path, CHURN_MODEL_NAME="mine")) == ModelLocation(
        "mine", path=tmp_path / "opt-ml" / "model")


@pytest.mark.parametrize("uri", ["models:/churn", "models:/@production", "models:/a/b@production", "s3://b/model",
                                 "runs:/abc/model"])
def test_a_model_uri_of_another_kind_is_a_config_error(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ConfigError, match="models:/NAME@ALIAS"):
        locate(settings(tmp_path, CHURN_MODEL_URI=uri))


def test_a_directory_source_loads_the_same_model_score_and_serve_use(tmp_path: Path, model_dir: Path) -> None:
    source = clients.model_source(settings(tmp_path, CHURN_MODEL_URI=str(model_dir)), n_threads=1)
    assert source.pollable is False and source.latest() == "directory"
    loaded = source.load()
    assert loaded.name == "churn" and loaded.version == "local" and loaded.source == str(model_dir)


def test_a_directory_without_a_model_is_not_found_naming_it(tmp_path: Path) -> None:
    source = clients.model_source(settings(tmp_path, CHURN_MODEL_URI=str(tmp_path / "empty")), n_threads=1)
    assert source.latest() is None
    with pytest.raises(ModelNotFound, match="empty"):
        source.load()


def test_a_registry_source_names_the_tracking_uri_without_its_password(tmp_path: Path) -> None:
    source = clients.model_source(settings(tmp_path, MLFLOW_TRACKING_URI="http://ops:hunter2@mlflow:5000"), 1)
    assert source.pollable is True
    assert source.description == "models:/churn@production at MLFLOW_TRACKING_URI=http://ops:***@mlflow:5000"
