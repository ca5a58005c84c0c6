"""--profile: the app under cProfile, in every thread, and where its time went per turn.

Run as a script (by bench/proxy.py, from the repository root) it serves reviewapp.asgi under
uvicorn as the benchmark does, with a profiler in the event loop's thread and one in each thread
started later (Django runs each request's sync code in a thread of its own), and writes their
merged statistics to --out when uvicorn stops (SIGTERM). Profiling starts on SIGUSR1, after the
warm-up. Imported, `print_profile` reads them.
The timer is each thread's CPU clock (time.thread_time), so waiting (for PostgreSQL, the agent,
the GIL) costs nothing; its own overhead inflates functions called often.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import signal
import sys
import threading
import time

# Built-ins that wait rather than work: their own time is idle time of their thread.
WAITS = (
    "'poll' of 'select.epoll'",
    "'acquire' of '_thread.",
    "'get' of '_queue.SimpleQueue'",
)
# Where a function's file is, by layer (first match wins).
LAYERS = (
    ("agents/schemas", "agents: reply parsing"),
    ("agents/trace", "agents: trace normalizing"),
    ("/agents/", "agents: other"),
    ("/reviewapp/", "reviewapp"),
    ("rest_framework", "Django REST framework"),
    ("django/db", "Django ORM"),
    ("django", "Django (other)"),
    ("psycopg", "psycopg (+pool)"),
    ("asgiref", "asgiref (sync <-> async)"),
    ("httpx", "httpx/httpcore"),
    ("httpcore", "httpx/httpcore"),
    ("h11", "uvicorn + h11"),
    ("uvicorn", "uvicorn + h11"),
    ("json", "json"),
    ("asyncio", "asyncio"),
    ("concurrent", "threads (concurrent.futures, threading)"),
    ("threading", "threads (concurrent.futures, threading)"),
)
# App functions whose cumulative time is shown (file suffix, function name, label).
SPOTS = (
    ("agents/chat_apis.py", "chat_api", "chat_api (event loop part)"),
    ("agents/chat_apis.py", "post", "DeploymentChatApi.post (DRF checks, in a thread)"),
    ("rest_framework/authentication.py", "authenticate_credentials", "  token lookup"),
    ("agents/selectors.py", "deployment_get_for_user", "  deployment visibility query"),
    ("agents/selectors.py", "conversation_get_for_user", "  conversation query"),
    ("agents/turn_log.py", "begin", "turn_log.begin (thread)"),
    ("agents/turn_log.py", "finish", "turn_log.finish (thread: INSERT turn, UPDATE conversation)"),
    ("agents/client.py", "post_json", "client.post_json (aiohttp, the agent's call)"),
    ("agents/chat_apis.py", "_turn_body", "_turn_body (answer body: normalize the trace)"),
    ("agents/traces.py", "normalize_trace", "  normalize_trace"),
    ("django/http/response.py", "__init__", "JsonResponse/HttpResponse init (json.dumps)"),
    ("asgiref/sync.py", "__call__", "asgiref SyncToAsync/AsyncToSync __call__"),
    ("django/core/handlers/asgi.py", "handle", "Django ASGIHandler.handle"),
)


def _new_profiler() -> cProfile.Profile:
    # Each thread's own CPU clock: with fifty requests' threads taking turns on the GIL, a wall
    # clock would charge the waits for it to whatever function each thread was in.
    return cProfile.Profile(time.thread_time_ns, 1e-9)


def _start_thread_profiler(frame, event, arg) -> None:
    profiler = _new_profiler()
    with _lock:
        _profilers.append(profiler)
    profiler.enable()  # replaces this hook for the thread it runs in


_lock = threading.Lock()
_profilers: list[cProfile.Profile] = []


def _start_profiling(signum, frame) -> None:
    """SIGUSR1, sent after the warm-up: profile this (the event loop's) thread and every thread
    started from now on."""
    if _profilers:
        return
    threading.setprofile(_start_thread_profiler)
    main = _new_profiler()
    _profilers.append(main)
    main.enable()


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # the repository root, where reviewapp is
    import uvicorn

    from reviewapp.asgi import application  # imported before profiling: start-up is not a turn

    signal.signal(signal.SIGUSR1, _start_profiling)
    # uvicorn re-raises the SIGTERM it stopped on once it is done; without a handler of ours
    # that would end the process before the statistics are written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(application, host="127.0.0.1", port=args.port, access_log=False, lifespan="off")
    finally:
        threading.setprofile(None)
        with _lock:
            if _profilers:
                _profilers[0].disable()
                pstats.Stats(*_profilers).dump_stats(args.out)


def _waits(filename: str, name: str) -> bool:
    return filename == "~" and any(wait in name for wait in WAITS)


def _layer(filename: str, name: str) -> str:
    """Built-ins (file "~") by their name: `<method 'dumps' ...>` of _json is json's."""
    where = name if filename == "~" else filename
    for needle, layer in LAYERS:
        if needle in where:
            return layer
    if filename != "~":
        return "other Python"
    if any(io in name for io in ("socket", "select", "epoll")):
        return "sockets, epoll"
    return "other built-ins (isinstance, getattr, str, dict...)"


def print_profile(path: str, turns: int, cpu_ms_per_turn: float | None) -> None:
    """The profile's busy time per turn by layer, and a few app functions' cumulative time."""
    stats = pstats.Stats(path).stats
    busy: dict[str, float] = {}
    idle = 0.0
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.items():
        if _waits(filename, name):
            idle += own
        else:
            layer = _layer(filename, name)
            busy[layer] = busy.get(layer, 0.0) + own
    total = sum(busy.values())
    turns = max(turns, 1)
    unprofiled = (
        f"; unprofiled, at 50 clients, the app used {cpu_ms_per_turn:.1f} ms CPU per turn"
        if cpu_ms_per_turn
        else ""
    )
    print(
        f"\nProfile of the app (cProfile in all threads, {turns} turns; its overhead inflates "
        f"the times{unprofiled}):"
    )
    print(f"  busy {1000 * total / turns:.2f} ms per turn (idle waits {1000 * idle / turns:.1f})")
    for layer, own in sorted(busy.items(), key=lambda item: -item[1]):
        print(f"  {1000 * own / turns:7.2f} ms  {100 * own / total:5.1f} %  {layer}")
    print("  cumulative, ms per turn:")
    for suffix, name, label in SPOTS:
        cum = sum(v[3] for (f, _line, n), v in stats.items() if n == name and f.endswith(suffix))
        if cum:
            print(f"  {1000 * cum / turns:7.2f} ms  {label}")
    print("  top functions by own time, ms per turn:")
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])
    shown = 0
    for (filename, line, name), (_cc, calls, own, _cum, _callers) in ranked:
        if _waits(filename, name):
            continue
        where = filename if filename == "~" else "/".join(filename.split("/")[-2:])
        print(f"  {1000 * own / turns:7.3f} ms  {calls / turns:6.1f} calls  {where}:{line} {name}")
        shown += 1
        if shown == 25:
            break


if __name__ == "__main__":
    serve(sys.argv[1:])
