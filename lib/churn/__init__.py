"""Customer-churn prediction: the core package (schema, model, scoring, adapters).

Where to look (the pure core imports no client library; `churn.adapters` takes clients as
arguments; `churn_jobs` (jobs/) and `churn_serve` (serve/) only wire settings to both):

- Input: `schema` (fields from params.yaml), `raw_columns`, `coercion` and `validation` (the one
  validator: clean and rejected rows), `rejections` (the rejected rows' problems and original
  records, capped), `categories` (learned values), `files` (local tables), `payloads`,
  `csv_body` and `media` (HTTP bodies), `duplicates` (the duplicate-id rule).
- Training: `config`, `param_checks` and `params` (params.yaml), `training` (split, cross-fit,
  refit, evaluate: the core of every `train`), `crossfit`, `tuning`, `model` (the sklearn
  Pipeline), `evaluation`, `promotion` (champion/challenger), `profile` (drift references),
  `model_card`.
- Scoring: `compiled` (the Pipeline as arrays), `scoring` (probability, band, reasons, the run's
  tally), `ranking` (a shard's ranks in bounded memory), `treeshap*` (exact reasons), `batch`
  (one nightly shard), `active_customers` (its file source), `prefetch` (reading while
  scoring), `sharding`, `risk_table` (schemas), `predictions` (`churn predict`), `explanation`
  and `narrative` (`churn explain`), `drift_report`.
- Serving: `invocations` (POST /invocations as a pure function), `fast_path` (records straight
  to the feature matrix) and `fast_path_converters` (its per-feature number and category rules),
  `single_row_predictor`, `serving_model`, `answers`.
- Where things are and how they fail: `settings` (every environment variable), `errors` (the one
  error table: HTTP status and exit code), `retries`, `logs`, `tempdirs`, `model_source`.
- Synthetic data: `generator`, `population`, `dirty_records`, `families`.

Entrypoints: `churn` (jobs/cli.py), `train` (jobs/train_executable.py -> jobs/training_job.py ->
jobs/stages.py and jobs/promotion_stage.py, the DVC stages), `score` (jobs/nightly_job.py, wired
by jobs/nightly_io.py, progress in jobs/score_progress.py), `serve` (serve/server.py ->
serve/app.py); every job exits through jobs/job_exit.py.
"""
