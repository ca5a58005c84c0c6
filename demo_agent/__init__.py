"""A demo agent speaking the Databricks Model Serving protocol, with real MLflow traces.

Run it with `python -m demo_agent` (see README.md). The MLflow environment is set here, first,
because MLflow reads it once at import time.
"""

from demo_agent import _mlflow_env  # noqa: F401  (side effect: environment for MLflow)
