"""params.yaml and the schema in it: loading, checking and SageMaker-style overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from churn.errors import ConfigError
from churn.params import Params, cast_like, default_params_path, load_params
from churn.schema import FeatureSpec, Schema

REPO = Path(__file__).resolve().parents[2]
SEED_FEATURES = [
    "tenure",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "internet_service",
    "tech_support",
    "online_security",
    "support_calls",
]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def changed(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of raw with the dotted path (list indices allowed) set to value."""
    out = copy.deepcopy(raw)
    *parents, leaf = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return out


# -- loading ---------------------------------------------------------------------------------


def test_repo_params_yaml_loads_with_the_seed_schema_and_hyperparameters() -> None:
    params = load_params(REPO / "params.yaml")
    schema = params.schema
    assert schema.feature_names == SEED_FEATURES
    assert (schema.id_field, schema.label_field, schema.revenue_field) == ("customer_id", "churned", "monthly_charges")
    assert [s.name for s in schema.numeric] == ["tenure", "monthly_charges", "total_charges", "support_calls"]
    assert schema.by_name["total_charges"].nullable and not schema.by_name["monthly_charges"].nullable
    assert schema.by_name["contract"].values == ("Month-to-month", "One year", "Two year")
    assert schema.by_name["tenure"].min == 0.0
    hp = params.hyperparameters
    assert {"n_estimators", "learning_rate", "class_weight"} <= set(hp)
    assert hp == yaml.safe_load((REPO / "params.yaml").read_text())["model"]["hyperparameters"]
    assert params.n_jobs >= 1


def test_packaged_default_is_the_repo_params_yaml() -> None:
    assert default_params_path().is_file()
    packaged = load_params()
    assert packaged.raw == load_params(REPO / "params.yaml").raw
    assert packaged.schema == load_params(default_params_path()).schema


def test_missing_or_invalid_params_file_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_params(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_params(broken)


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        Params.from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_params_raw_is_a_copy_not_shared_with_the_caller(raw: dict[str, Any]) -> None:
    mine = copy.deepcopy(raw)
    params = Params.from_dict(mine)
    mine["model"]["hyperparameters"]["n_estimators"] = 1
    assert params.hyperparameters["n_estimators"] == raw["model"]["hyperparameters"]["n_estimators"] != 1


# -- bad values name the key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("calibration.method", "platt", "calibration.method"),
        ("model.hyperparameters.n_estimators", -5, "n_estimators"),
        ("model.hyperparameters.n_estimators", 0, "n_estimators"),
        ("model.hyperparameters.learning_rate", 0, "learning_rate"),
        ("model.hyperparameters.learning_rate", 1.5, "learning_rate"),
        ("model.hyperparameters.class_weight", "heavy", "class_weight"),
        ("model.encoding", "hashing", "model.encoding"),
        ("model.impute", "mode", "model.impute"),
        ("split.test_size", 0.5, "split.test_size"),
        ("split.validation_size", "0.2", "split.validation_size"),
        ("scoring.risk_bands", {"high": 0.5, "medium": 0.2}, "risk_bands"),
        ("scoring.risk_bands", {}, "risk_bands"),
        ("schema.features.3.values", [], "contract"),
        ("schema.features.3.type", "enum", "schema.features[3]"),
        ("schema.features.4.values", ["Mailed check", "Mailed check"], "payment_method"),
        ("schema.features.0.min", 10, "tenure"),
        ("schema.features.0.max", -1, "tenure"),
        ("schema.revenue_field", "salary", "revenue_field"),
        ("schema.features", [], "schema.features"),
    ],
)
def test_bad_value_raises_config_error_naming_the_key(raw: dict[str, Any], path: str, value: Any, named: str) -> None:
    if path == "schema.features.0.min":
        raw = changed(raw, "schema.features.0.max", 5)
    with pytest.raises(ConfigError) as err:
        Params.from_dict(changed(raw, path, value))
    assert named in str(err.value)


def test_category_with_an_empty_values_list_names_the_feature(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    broken["schema"]["features"][5]["values"] = []
    with pytest.raises(ConfigError, match=r"internet_service.*non-empty list.*leave it out"):
        Params.from_dict(broken)


def test_category_without_values_is_one_whose_values_training_learns(raw: dict[str, Any]) -> None:
    """Before `values` could be learned, leaving them out was a ConfigError."""
    changed = copy.deepcopy(raw)
    del changed["schema"]["features"][5]["values"]
    schema = Params.from_dict(changed).schema
    assert [f.name for f in schema.to_learn] == ["internet_service"]
    assert schema.by_name["internet_service"].to_dict()["learned"] is True


def test_unknown_policy_defaults_to_missing_and_may_be_reject(raw: dict[str, Any]) -> None:
    changed = copy.deepcopy(raw)
    changed["schema"]["features"][3]["unknown"] = "reject"
    schema = Params.from_dict(changed).schema
    assert {f.name: f.unknown for f in schema.categorical} == {
        "contract": "reject", "payment_method": "missing", "internet_service": "missing", "tech_support": "missing",
        "online_security": "missing"}


@pytest.mark.parametrize("index, key, value, named", [
    (3, "unknown", "drop", r"unknown='drop' \(contract\) must be one of missing, reject"),
    (0, "unknown", "reject", r"unknown \(tenure\) is only for a category"),
    (3, "max_values", 50, r"max_values \(contract\) caps learned values"),
    (0, "values", ["a"], r"values \(tenure\) is only for a category"),
])
def test_bad_category_rules_name_the_feature(raw: dict[str, Any], index: int, key: str, value: Any,
                                             named: str) -> None:
    broken = copy.deepcopy(raw)
    broken["schema"]["features"][index][key] = value
    with pytest.raises(ConfigError, match=named):
        Params.from_dict(broken)


@pytest.mark.parametrize("value", [0, -3, True, "many"])
def test_max_values_must_be_a_positive_integer(raw: dict[str, Any], value: Any) -> None:
    broken = copy.deepcopy(raw)
    del broken["schema"]["features"][3]["values"]
    broken["schema"]["features"][3]["max_values"] = value
    with pytest.raises(ConfigError, match=r"max_values=.*\(contract\) must be an integer >= 1"):
        Params.from_dict(broken)


def test_duplicate_feature_names_raise_config_error(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    broken["schema"]["features"].append({"name": "tenure", "type": "int", "min": 0})
    with pytest.raises(ConfigError, match=r"schema\.features repeats tenure"):
        Params.from_dict(broken)


def test_min_greater_than_max_raises_config_error(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"support_calls.*min > max"):
        Params.from_dict(changed(changed(raw, "schema.features.8.min", 5), "schema.features.8.max", 2))


def test_feature_without_a_name_raises_config_error(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"schema\.features\[1\] needs a name"):
        Params.from_dict(changed(raw, "schema.features.1", {"type": "float"}))


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("model.hyperparameters.n_estimators", "abc", "n_estimators"),
        ("model.hyperparameters.learning_rate", "fast", "learning_rate"),
        ("schema.features.0.min", "low", "tenure"),
        ("scoring.risk_bands.high", "x", "risk_bands"),
    ],
)
def test_non_numeric_value_in_params_file_raises_config_error_naming_the_key(
    raw: dict[str, Any], path: str, value: Any, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        Params.from_dict(changed(raw, path, value))


# -- overrides (SageMaker hyperparameters.json sends strings) ----------------------------------


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.mark.parametrize(
    ("overrides", "section", "key", "expected"),
    [
        ({"n_estimators": "300"}, "hp", "n_estimators", 300),
        ({"n_estimators": " 300 "}, "hp", "n_estimators", 300),
        ({"n_estimators": "1e3"}, "hp", "n_estimators", 1000),
        ({"learning_rate": "0.05"}, "hp", "learning_rate", 0.05),
        ({"reg_alpha": "1"}, "hp", "reg_alpha", 1.0),
        ({"class_weight": "null"}, "hp", "class_weight", None),
        ({"class_weight": "None"}, "hp", "class_weight", None),
        ({"class_weight": "balanced"}, "hp", "class_weight", "balanced"),
        ({"calibration.method": "sigmoid"}, "calibration", "method", "sigmoid"),
        ({"model.hyperparameters.num_leaves": "15"}, "hp", "num_leaves", 15),
        ({"split.seed": "7"}, "split", "seed", 7),
        ({"promotion.min_improvement": "0.01"}, "promotion", "min_improvement", 0.01),
        ({"model.encoding": "onehot"}, "model", "encoding", "onehot"),
    ],
)
def test_with_overrides_casts_strings_to_the_type_the_key_has(
    params: Params, overrides: dict[str, str], section: str, key: str, expected: Any
) -> None:
    new = params.with_overrides(overrides)
    got = new.hyperparameters[key] if section == "hp" else new.section(section)[key]
    assert got == expected and type(got) is type(expected)


def test_with_overrides_leaves_the_original_untouched(params: Params) -> None:
    before = copy.deepcopy(params.raw)
    new = params.with_overrides({"n_estimators": "301", "calibration.method": "isotonic"})
    assert params.raw == before
    assert new.hyperparameters["n_estimators"] == 301 != params.hyperparameters["n_estimators"]
    assert new.section("calibration")["method"] == "isotonic" != params.section("calibration")["method"]


def test_calibration_method_none_can_be_chosen_by_override(params: Params) -> None:
    assert params.with_overrides({"calibration.method": "none"}).section("calibration")["method"] == "none"


def test_with_overrides_casts_true_to_bool_for_a_bool_parameter(raw: dict[str, Any]) -> None:
    with_bool = changed(raw, "model.hyperparameters.deterministic", False)
    params = Params.from_dict(with_bool)
    assert params.with_overrides({"deterministic": "true"}).hyperparameters["deterministic"] is True
    assert params.with_overrides({"deterministic": "False"}).hyperparameters["deterministic"] is False
    with pytest.raises(ConfigError, match="deterministic"):
        params.with_overrides({"deterministic": "maybe"})


@pytest.mark.parametrize(
    ("current", "text", "expected"),
    [
        (True, "true", True),
        (False, "TRUE", True),
        (True, "false", False),
        (True, "0", False),
        (1, "300", 300),
        (0.1, "0.05", 0.05),
        (0.1, "3", 3.0),
        (None, "null", None),
        (None, "7", "7"),
        ("balanced", "null", None),
        ("balanced", "none", "none"),
        ("isotonic", "sigmoid", "sigmoid"),
    ],
)
def test_cast_like_follows_the_current_type(current: Any, text: str, expected: Any) -> None:
    got = cast_like("key", text, current)
    assert got == expected and type(got) is type(expected)


def test_non_string_override_values_pass_through_uncast() -> None:
    assert cast_like("n_estimators", 300, 200) == 300


@pytest.mark.parametrize("key", ["n_estimators", "model.hyperparameters.n_estimators", "split.seed"])
@pytest.mark.parametrize("value", ["abc", "12.5", "nan", ""])
def test_uncastable_value_for_an_int_raises_config_error_naming_the_key(params: Params, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        params.with_overrides({key: value})
    assert repr(key) in str(err.value)
    assert err.value.details["key"] == key


def test_uncastable_float_raises_config_error_naming_the_key(params: Params) -> None:
    with pytest.raises(ConfigError, match="'learning_rate'='fast'"):
        params.with_overrides({"learning_rate": "fast"})


@pytest.mark.parametrize(
    "key", ["max_depht", "sagemaker_program_typo", "calibration.methd", "nothere.method", "schema.features.0"]
)
def test_unknown_override_key_raises_config_error_naming_it(params: Params, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        params.with_overrides({"n_estimators": "10", key: "1"})
    assert repr(key) in str(err.value)
    assert err.value.details["key"] == key


def test_unknown_hyperparameter_error_lists_the_known_ones(params: Params) -> None:
    with pytest.raises(ConfigError, match=r"known: .*learning_rate.*n_estimators"):
        params.with_overrides({"max_depht": "3"})


def test_override_to_a_structured_value_is_refused(params: Params) -> None:
    with pytest.raises(ConfigError, match="schema.features"):
        params.with_overrides({"schema.features": "[]"})


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"n_estimators": "-3"}, "n_estimators"),
        ({"learning_rate": "0"}, "learning_rate"),
        ({"calibration.method": "platt"}, "calibration.method"),
        ({"split.test_size": "0.7"}, "split.test_size"),
    ],
)
def test_override_that_casts_but_breaks_a_rule_raises_config_error_naming_the_key(
    params: Params, overrides: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        params.with_overrides(overrides)


# -- schema object -----------------------------------------------------------------------------


def test_schema_round_trips_through_to_dict(params: Params) -> None:
    assert Schema.from_dict(params.schema.to_dict()) == params.schema


def test_a_number_may_say_its_unit_for_explanations_and_a_category_may_not(params: Params) -> None:
    assert params.schema.by_name["tenure"].unit == "months"
    assert params.schema.by_name["tenure"].to_dict()["unit"] == "months"
    assert "unit" not in params.schema.by_name["support_calls"].to_dict()
    for bad in ({"name": "plan", "type": "category", "values": ["a"], "unit": "months"},
                {"name": "age", "type": "int", "unit": 3}, {"name": "age", "type": "int", "unit": " "}):
        with pytest.raises(ConfigError, match=r"features\[0\]\.unit"):
            Schema.from_dict({"features": [bad]})


def test_schema_with_other_columns_needs_no_seed_field() -> None:
    schema = Schema.from_dict(
        {
            "id_field": "user_id",
            "label_field": "left",
            "features": [
                {"name": "age", "type": "int", "min": 18},
                {"name": "plan", "type": "category", "values": ["basic", "pro"]},
                {"name": "spend", "type": "float", "nullable": True},
            ],
        }
    )
    assert schema.feature_names == ["age", "plan", "spend"]
    assert schema.by_name["plan"] == FeatureSpec("plan", "category", values=("basic", "pro"))
    assert schema.by_name["age"].max is None and schema.revenue_field is None
    assert [s.name for s in schema.categorical] == ["plan"]


# -- typed sections and unknown keys (issue 13) ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "typo", "closest"),
    [
        ("model.hyperparameters", "learning_rat", "learning_rate"),
        ("model", "early_stoping_rounds", "early_stopping_rounds"),
        ("split", "test_sise", "test_size"),
        ("tuning", "max_trails", "max_trials"),
        ("tuning.budget", "max_second", "max_seconds"),
        ("tuning.space", "num_leave", "num_leaves"),
        ("calibration", "methd", "method"),
        ("threshold", "metrik", "metric"),
        ("promotion", "min_improvment", "min_improvement"),
        ("data", "customer", "customers"),
        ("scoring", "max_reject_shares", "max_reject_share"),
        ("serving", "max_row", "max_rows"),
        ("schema", "label_feld", "label_field"),
        ("schema.features.0", "nulable", "nullable"),
        ("", "promotions", "promotion"),
    ],
)
def test_an_unknown_key_in_any_section_names_it_and_the_closest_known_one(
    raw: dict[str, Any], path: str, typo: str, closest: str
) -> None:
    bad = copy.deepcopy(raw)
    node: Any = bad
    for part in path.split(".") if path else []:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[typo] = node.get(closest, 1) if isinstance(node, dict) else 1
    with pytest.raises(ConfigError) as err:
        Params.from_dict(bad)
    message = str(err.value)
    assert message.startswith("unknown parameter") and f"{typo}'" in message
    assert f"did you mean {closest!r}" in message


def test_typed_sections_carry_the_file_values_and_defaults_for_what_it_leaves_out(raw: dict[str, Any]) -> None:
    params = Params.from_dict(raw)
    assert params.split.folds == 5 and params.split.test_size == 0.2
    assert params.tuning.enabled is True and params.tuning.objective == "log_loss"
    assert params.tuning.budget.seconds(2_000) == 44.0
    assert params.model.hyperparameters["num_leaves"] == 7 and params.n_jobs == params.model.n_jobs
    assert params.promotion.apply is False and params.calibration.method == "sigmoid"
    minimal = Params.from_dict({"schema": raw["schema"], "scoring": raw["scoring"]})
    assert minimal.split.folds == 5 and minimal.tuning.max_trials == 60 and minimal.promotion.confidence == 0.95


def test_a_key_the_file_leaves_out_can_still_be_overridden_by_its_dotted_path(raw: dict[str, Any]) -> None:
    minimal = Params.from_dict({"schema": raw["schema"], "scoring": raw["scoring"]})
    changed_params = minimal.with_overrides({"tuning.objective": "roc_auc", "tuning.budget.max_seconds": "60",
                                             "promotion.apply": "true"})
    assert changed_params.tuning.objective == "roc_auc"
    assert changed_params.tuning.budget.max_seconds == 60.0
    assert changed_params.promotion.apply is True
    with pytest.raises(ConfigError, match="tuning.objectiv"):
        minimal.with_overrides({"tuning.objectiv": "roc_auc"})


def test_the_spelling_check_knows_every_key_the_scoring_and_serving_code_reads() -> None:
    """`scoring:` and `serving:` are typed elsewhere (scoring.py, invocations.py): a key they read but
    the check does not know would make every params file that sets it fail to load."""
    import re

    from churn import param_checks

    root = REPO / "lib" / "churn"
    read = set(re.findall(r'section\.get\("(\w+)"', (root / "scoring.py").read_text()))
    assert read and read <= set(param_checks.SCORING_KEYS)
    served = set(re.findall(r'section\("serving"\)\.get\("(\w+)"', (root / "invocations.py").read_text()))
    assert served <= set(param_checks.SERVING_KEYS)
