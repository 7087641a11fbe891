"""The one error table (churn.errors): HTTP status and exit code of every error class."""

from __future__ import annotations

import json

import pytest

from churn import errors
from churn.errors import (
    EXIT_BAD_INPUT,
    EXIT_RETRYABLE,
    ChurnError,
    ConfigError,
    InvalidInput,
    InvalidRecord,
    ModelNotFound,
    ModelNotReady,
    NotAcceptable,
    PayloadTooLarge,
    TooManyRejects,
    TooManyRows,
    UnavailableService,
    UnsupportedMediaType,
    UntrustedModel,
    mapping_for,
)

# class -> (HTTP status, exit code): 3 = bad input/config, do not retry; 1 = worth retrying.
EXPECTED = {
    InvalidInput: (400, 3),
    InvalidRecord: (400, 3),
    NotAcceptable: (406, 3),
    PayloadTooLarge: (413, 3),
    TooManyRows: (413, 3),
    UnsupportedMediaType: (415, 3),
    ModelNotReady: (503, 3),
    ModelNotFound: (503, 3),
    UntrustedModel: (503, 3),
    UnavailableService: (503, 1),
    ConfigError: (500, 3),
    TooManyRejects: (422, 3),
    ChurnError: (500, 1),
}


def test_exit_codes_are_three_for_do_not_retry_and_one_for_retry() -> None:
    assert (EXIT_BAD_INPUT, EXIT_RETRYABLE) == (3, 1)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_error_class_maps_to_its_documented_status_and_exit_code(cls: type[ChurnError]) -> None:
    mapping = mapping_for(cls("boom"))
    assert (mapping.http_status, mapping.exit_code) == EXPECTED[cls]


def test_error_table_has_one_row_per_class_and_ends_with_the_base_class() -> None:
    in_table = [cls for cls, _ in errors.ERROR_TABLE]
    assert set(EXPECTED) - set(in_table) == {InvalidRecord}, "InvalidRecord inherits InvalidInput's row"
    assert len(in_table) == len(set(in_table))
    assert in_table[-1] is ChurnError, "the catch-all base class must come last"


def test_no_table_row_is_shadowed_by_an_earlier_parent_class() -> None:
    """First isinstance match wins: a parent listed before its subclass would hide the subclass."""
    in_table = [cls for cls, _ in errors.ERROR_TABLE]
    for i, cls in enumerate(in_table):
        for later in in_table[i + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is listed after its parent {cls.__name__}"


def test_client_errors_are_4xx_and_never_retried() -> None:
    for cls in (InvalidInput, InvalidRecord, NotAcceptable, PayloadTooLarge, TooManyRows, UnsupportedMediaType):
        mapping = mapping_for(cls("bad"))
        assert 400 <= mapping.http_status < 500 and mapping.exit_code == EXIT_BAD_INPUT


def test_a_subclass_defined_elsewhere_inherits_its_parents_mapping() -> None:
    class BodyTooDeep(PayloadTooLarge):
        pass

    mapping = mapping_for(BodyTooDeep("x"))
    assert (mapping.http_status, mapping.exit_code) == (413, 3)


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("k"), RuntimeError(), ConnectionError("down")])
def test_unknown_exceptions_map_to_500_and_retryable(error: BaseException) -> None:
    mapping = mapping_for(error)
    assert (mapping.http_status, mapping.exit_code) == (500, 1)


def test_to_dict_has_error_message_and_details() -> None:
    error = InvalidRecord("row 3 tenure: out_of_bounds", row=3, field="tenure")
    assert error.to_dict() == {
        "error": "invalid_record",
        "message": "row 3 tenure: out_of_bounds",
        "row": 3,
        "field": "tenure",
    }
    assert json.loads(json.dumps(error.to_dict())) == error.to_dict()
    assert str(error) == "row 3 tenure: out_of_bounds"


def test_every_error_class_has_its_own_code() -> None:
    codes = [cls("m").to_dict()["error"] for cls in EXPECTED]
    assert len(set(codes)) == len(codes)
    assert ConfigError("m").to_dict() == {"error": "bad_config", "message": "m"}
    assert UnavailableService("m").code == "service_unavailable"
