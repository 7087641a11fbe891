#!/usr/bin/env bash
# The main job on embedded defaults, on one laptop with nothing configured:
# generate customers -> dvc repro (train, evaluate, judge) -> promote by hand -> nightly score
# -> the morning's list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/env.sh

[ -d .dvc ] || dvc init -q
echo "== training pipeline (dvc repro)"
dvc repro
echo
echo "== promotion is an explicit act: move production to the challenger if it won"
churn stage promote --apply
echo
echo "== registered models"
churn model list
echo
echo "== test metrics of the challenger"
dvc metrics show metrics/test.json metrics/promotion.json
echo
echo "== nightly scoring with the production model"
churn data generate --customers 20000 --seed 7 --labelled-share 0 --dirty-rate 0.01 --out data/active.parquet
churn score --source data/active.parquet
echo
echo "== the morning's list"
churn risk top --limit 10
