"""Environment MLflow reads at import time; imported by the package before anything else.

MLflow decides how to export traces when it is first imported, so these must be in place before
any `import mlflow`. They make MLflow take Databricks Model Serving's code path: finished traces
go to the in-memory buffer that `pop_trace(request_id)` reads (mlflow-notes.md).
"""

import os

# Databricks Model Serving's trace path: buffer finished traces by request id.
os.environ.setdefault("IS_IN_DB_MODEL_SERVING_ENV", "true")
os.environ.setdefault("ENABLE_MLFLOW_TRACING", "true")
# Always empty: with a catalog URI MLflow fetches LLM prices over HTTP for spans with token usage,
# and without internet those retries land inside the root span's duration.
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# With an experiment id set, the serving exporter also ships every trace to a Databricks tracking
# server; the demo agent has none and must never call out.
os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
