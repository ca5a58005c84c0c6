"""bench/proxy.py's chat load (see its docstring): the HTTP client (wire), the simulated clients
(clients), the phases they run in (phases), the proxies measured beside the app (peers), one
part's processes and each side's clients (servers), each part's run (runs), the printed tables
(report), the app under cProfile (profiling) and the benchmark's data (setup).

setup, runs and harness.reviewers import Django models: import them after
harness.config.configure(); the others need no Django.
"""
