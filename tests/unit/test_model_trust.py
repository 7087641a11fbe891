"""Loading a model never runs code from it: pickle formats and off-list skops types are refused first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from crafted_models import (
    PLANTED_TYPE,
    edit_mlmodel,
    pickle_model,
    planted_skops_model,
    prove_pickle_runs,
    prove_skops_runs,
)

from churn.adapters import model_format
from churn.errors import InvalidModel, UntrustedModel, mapping_for


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle", "default"])
def test_a_pickle_model_is_refused_before_anything_is_unpickled(model_dir: Path, tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    crafted = pickle_model(model_dir, tmp_path / "model", marker, fmt)

    with pytest.raises(UntrustedModel, match="refused, only 'skops' is loaded") as refused:
        model_format.load(crafted)

    assert not marker.exists(), "the crafted pickle ran while loading"
    assert ("'pickle'" if fmt == "default" else repr(fmt)) in refused.value.message
    assert mapping_for(refused.value).exit_code == 3
    prove_pickle_runs(crafted, marker)


def test_skops_types_are_checked_against_the_project_list_not_the_one_in_mlmodel(
    model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    crafted = planted_skops_model(model_dir, tmp_path / "model", marker)

    with pytest.raises(UntrustedModel, match="outside the project's allow-list") as refused:
        model_format.load(crafted)

    assert PLANTED_TYPE in refused.value.message and not marker.exists()
    prove_skops_runs(crafted, marker)


def test_the_trusted_types_written_in_mlmodel_play_no_part_in_loading(model_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(model_dir, tmp_path / "model")
    edit_mlmodel(model, lambda spec: spec["flavors"]["sklearn"].update(skops_trusted_types=[]))

    loaded = model_format.load(model)

    assert loaded.trained.pipeline is not None and loaded.compiled.threshold == pytest.approx(
        model_format.load(model_dir).compiled.threshold)


@pytest.mark.parametrize("name", ["../model.skops", "/etc/passwd", "sub/model.skops", "missing.skops"])
def test_a_skops_file_outside_the_directory_or_missing_is_refused(model_dir: Path, tmp_path: Path, name: str) -> None:
    model = shutil.copytree(model_dir, tmp_path / "model")
    shutil.copy(model / "model.skops", tmp_path / "model.skops")
    edit_mlmodel(model, lambda spec: spec["flavors"]["sklearn"].update(pickled_model=name))

    with pytest.raises(UntrustedModel, match="not a plain file inside the directory"):
        model_format.load(model)


def test_a_symlinked_skops_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(model_dir, tmp_path / "model")
    (model / "model.skops").rename(tmp_path / "elsewhere.skops")
    (model / "model.skops").symlink_to(tmp_path / "elsewhere.skops")

    with pytest.raises(UntrustedModel, match="not a plain file"):
        model_format.load(model)


def test_a_model_without_an_sklearn_flavor_is_refused(model_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(model_dir, tmp_path / "model")
    edit_mlmodel(model, lambda spec: spec["flavors"].pop("sklearn"))

    with pytest.raises(UntrustedModel, match="no sklearn flavor"):
        model_format.load(model)


def test_an_unreadable_skops_file_is_an_invalid_model_not_a_crash(model_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(model_dir, tmp_path / "model")
    (model / "model.skops").write_bytes(b"not a zip")

    with pytest.raises(InvalidModel, match="not a readable skops file"):
        model_format.load(model)


def test_saving_refuses_a_pipeline_with_a_type_off_the_allow_list(tmp_path: Path) -> None:
    from crafted_models import Planted

    with pytest.raises(UntrustedModel, match="ALLOWED_TYPES"):
        model_format.trusted_types(Planted(tmp_path / "x"))


def test_the_digest_changes_with_any_byte_and_not_with_the_location(model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    assert model_format.digest(copy) == model_format.digest(model_dir)

    requirements = copy / "requirements.txt"
    requirements.write_text(requirements.read_text() + "evil==1\n")
    assert model_format.digest(copy) != model_format.digest(model_dir)

    (copy / "requirements.txt").write_bytes((model_dir / "requirements.txt").read_bytes())
    (copy / "extra.pkl").write_bytes(b"")
    assert model_format.digest(copy) != model_format.digest(model_dir), "an added file must change the digest"
