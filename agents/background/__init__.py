"""Turns an agent answers in the background (Databricks Agent Runtime, MLflow's
LongRunningAgentServer): the run is started, its id saved with the turn at once, then its events
are followed (a cut stream is resumed after its last event) or its state polled, and the turn is
finished once, by whichever of the page, the API call, the poll or the Celery sweep reads the
ended run first (record.finish_run's compare-and-set)."""
