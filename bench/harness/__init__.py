"""What bench/ratings.py and bench/proxy.py share: the run's configuration and the Django set-up
(config), the child processes they start (processes), CPU and memory from /proc (machine),
PostgreSQL's side (database), percentiles (stats) and the reviewers they act as (reviewers).

config is imported first and its configure() called before anything that imports Django models
(database's QueryTimer does not; reviewers does).
"""
