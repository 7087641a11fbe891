"""The `unknown:` policy of category features, for tests that check either side of it.

The shipped params.yaml leaves `unknown` at its default (`missing`: a value the model never
learned is scored as missing); `rejecting` gives the same schema under `unknown: reject`,
which keeps the behaviour from before the policy existed (the record is rejected).
"""

from __future__ import annotations

from dataclasses import replace

from churn.model_source import LoadedModel
from churn.params import Params
from churn.schema import Schema

# The generator's dirty kinds that put a value outside a category's list: rejected only
# under `unknown: reject`; under `missing` the record is scored with that value missing.
UNSEEN_KINDS = frozenset({"reject:unknown_contract", "reject:unknown_internet_service"})


def rejecting(schema: Schema) -> Schema:
    """`schema` with every category under `unknown: reject`."""
    return replace(schema, features=tuple(replace(f, unknown="reject") if not f.is_numeric else f
                                          for f in schema.features))


def rejecting_params(params: Params) -> Params:
    return replace(params, schema=rejecting(params.schema))


def rejected_kind(kind: str | None, policy: str = "missing") -> bool:
    """Whether the validator rejects a generated row of this dirty kind under `policy`."""
    return bool(kind) and kind.startswith("reject:") and (policy == "reject" or kind not in UNSEEN_KINDS)


def rejecting_model(loaded: LoadedModel) -> LoadedModel:
    """The same model with its schema's categories under `unknown: reject`."""
    schema = rejecting(loaded.compiled.schema)
    return replace(loaded, compiled=replace(loaded.compiled, schema=schema),
                   trained=replace(loaded.trained, schema=schema))
