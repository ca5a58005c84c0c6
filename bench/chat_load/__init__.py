"""bench/proxy.py's chat load (see its docstring): the HTTP client (wire), the simulated chat
clients of every side (clients), the phases they run in (phases), each part's run (runs), the
proxies measured beside the app (peers), the printed tables (report), the app under cProfile
(profiling) and the benchmark's data (setup).

wire, clients, phases and peers need no Django; setup, runs and profiling's print_profile import
Django models or the app: import them after harness.config.configure().
"""
