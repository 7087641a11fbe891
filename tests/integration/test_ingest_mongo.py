"""Ingestion from the real MongoDB wire server equals ingestion of the same data from Parquet."""

from __future__ import annotations

import pyarrow as pa
import pytest

from churn import files, generator
from churn.adapters.mongo import CustomerStore
from churn.settings import Settings
from churn_jobs import stages


def test_mongodb_ingest_equals_parquet_ingest(tmp_path, mongo_server, mongo_db, params):
    config = generator.GeneratorConfig(n_customers=1_500, seed=5, dirty_rate=0.05, labelled_share=0.8)
    chunks = list(generator.generate(config))
    CustomerStore(mongo_db, "customers").insert(generator.to_documents(c) for c in chunks)
    parquet = tmp_path / "customers.parquet"
    generator.write_parquet(config, parquet)

    from_mongo = stages.Layout(tmp_path / "mongo")
    from_file = stages.Layout(tmp_path / "file")
    mongo_settings = Settings.from_env({}, mongodb_uri=mongo_server.uri, mongodb_database=mongo_db.name)
    a = stages.ingest(mongo_settings, params, from_mongo)
    b = stages.ingest(Settings.from_env({}), params, from_file, source=parquet)

    clean_a = files.read_table(from_mongo.snapshot / "clean.parquet").sort_by("customer_id")
    clean_b = files.read_table(from_file.snapshot / "clean.parquet").sort_by("customer_id")
    assert clean_a.num_rows == clean_b.num_rows > 1_000
    assert clean_a.equals(clean_b)
    rejected_a = files.read_table(from_mongo.snapshot / "rejects.parquet")
    rejected_b = files.read_table(from_file.snapshot / "rejects.parquet")
    assert sorted(rejected_a.column("customer_id").to_pylist()) == sorted(rejected_b.column("customer_id").to_pylist())
    assert a["data_hash"] == b["data_hash"]
    labelled = pa.concat_tables(chunks).filter(pa.compute.is_valid(pa.concat_tables(chunks).column("churned")))
    assert a["rows"] == labelled.num_rows


def test_a_filter_the_server_refuses_is_bad_config_not_an_outage(tmp_path, mongo_server, mongo_db, params):
    """Issue 14: CUSTOMERS_FILTER={"$bad": 1} used to exit 1 (retry forever); it is exit 3 naming the filter."""
    from churn.errors import ConfigError, mapping_for

    config = generator.GeneratorConfig(n_customers=50, seed=5)
    CustomerStore(mongo_db, "customers").insert(generator.to_documents(c) for c in generator.generate(config))
    settings = Settings.from_env({}, mongodb_uri=mongo_server.uri, mongodb_database=mongo_db.name,
                                 customers_filter='{"$bad": 1}')

    with pytest.raises(ConfigError, match="CUSTOMERS_FILTER") as err:
        stages.ingest(settings, params, stages.Layout(tmp_path))

    assert mapping_for(err.value).exit_code == 3


def test_ingest_reads_only_the_customers_the_filter_selects(tmp_path, mongo_server, mongo_db, params):
    config = generator.GeneratorConfig(n_customers=600, seed=6)
    CustomerStore(mongo_db, "customers").insert(generator.to_documents(c) for c in generator.generate(config))
    settings = Settings.from_env({}, mongodb_uri=mongo_server.uri, mongodb_database=mongo_db.name,
                                 customers_filter='{"contract": "Two year"}')

    summary = stages.ingest(settings, params, stages.Layout(tmp_path))

    clean = files.read_table(tmp_path / "data" / "snapshot" / "clean.parquet")
    assert 0 < summary["rows"] < 600
    assert set(clean.column("contract").to_pylist()) == {"Two year"}
