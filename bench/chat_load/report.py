"""The printed tables: latency and time to first token of both sides, their differences and
ratios, the thousand-in-flight figures, and where the CPU went."""

from __future__ import annotations

from collections import Counter

from harness.machine import CpuUse
from harness.stats import percentile

from .phases import SIDES, InflightResult, RoundsResult

PCTS = (50, 90, 99)
ADDED_TARGETS = {50: 2.0, 99: 10.0}  # ms, at 50 clients (the issue)
TTFT_TARGET_P50_MS = 5.0
INFLIGHT_SHARE_TARGET = 0.90
RSS_TARGET_MB = 400


def _pcts(values: list[float]) -> list[float]:
    return [percentile(values, q) for q in PCTS]


def _errors(counter: Counter) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in counter.most_common()) or "0"


def _ratio(a: float, b: float) -> str:
    return f"{a / b if b else float('nan'):>8.2f}"


def print_rounds(results: list[RoundsResult], ttft: bool) -> None:
    if not results:
        return
    what = "time to first token" if ttft else "turn latency"
    target = (
        f"target: added p50 <= {TTFT_TARGET_P50_MS:g} ms"
        if ttft
        else "target at 50 clients: added p50 <= 2 ms, p99 <= 10 ms"
    )
    print(f"\n{what.capitalize()}, ms, through the app vs straight to the agent ({target})")
    head = (
        f"{'clients':>7} {'side':<11} {'turns':>6} {'turns/s':>8} "
        + " ".join(f"{'p' + str(q):>8}" for q in PCTS)
        + f" {'max':>8}  errors"
    )
    print(head + "\n" + "-" * len(head))
    for r in results:
        values = {side: r.values(side, ttft) for side in SIDES}
        for side in SIDES:
            row = _pcts(values[side])
            print(
                f"{r.clients:>7} {side:<11} {len(values[side]):>6} {r.rate(side):>8.1f} "
                + " ".join(f"{v:>8.2f}" for v in row)
                + f" {max(values[side], default=float('nan')):>8.2f}  "
                + _errors(r.results[side].error_kinds())
            )
        direct, app = _pcts(values["direct"]), _pcts(values["app"])
        added = [a - d for a, d in zip(app, direct, strict=True)]
        print(
            f"{r.clients:>7} {'added':<11} {'':>6} {'':>8} "
            + " ".join(f"{v:>8.2f}" for v in added)
            + ("  (app - direct, per percentile)")
        )
        print(
            f"{r.clients:>7} {'app/direct':<11} {'':>6} "
            f"{r.rate('app') / max(r.rate('direct'), 1e-9):>8.2f} "
            + " ".join(_ratio(a, d) for a, d in zip(app, direct, strict=True))
        )
        if not ttft and r.clients == 50:
            verdicts = [
                f"p{q} {'met' if added[PCTS.index(q)] <= limit else 'MISSED'} "
                f"({added[PCTS.index(q)]:.1f} vs <= {limit:g})"
                for q, limit in ADDED_TARGETS.items()
            ]
            print(f"{'':>7} target: {', '.join(verdicts)}")
        if ttft:
            added_p50 = added[0]
            verdict = "met" if added_p50 <= TTFT_TARGET_P50_MS else "MISSED"
            print(f"{'':>7} target: p50 {verdict} ({added_p50:.1f} vs <= {TTFT_TARGET_P50_MS:g})")
    print_cpu(
        [
            (f"{r.clients} clients, {side}", r.cpu[side], len(r.results[side].replies))
            for r in results
            for side in SIDES
        ]
    )


def print_cpu(rows: list[tuple[str, CpuUse, int]]) -> None:
    """CPU of each process as a share of all cores (50 % = one of two), and per turn."""
    names = ("app", "agent", "PostgreSQL", "load client")
    head = (
        f"  {'CPU, % of all cores':<22} {'machine':>7} "
        + " ".join(f"{n:>11}" for n in names)
        + f" {'others':>7} | ms CPU per turn: "
        + " ".join(f"{n:>10}" for n in names[:3])
    )
    print(head)
    for label, use, turns in rows:
        per_turn = [1000 * use.seconds.get(n, 0.0) / max(turns, 1) for n in names[:3]]
        print(
            f"  {label:<22} {use.machine_busy_pct:>6.0f}% "
            + " ".join(f"{use.pct(n):>10.0f}%" for n in names)
            + f" {use.others_pct:>6.0f}% | {'':>16}"
            + " ".join(f"{v:>10.2f}" for v in per_turn)
        )


def print_inflight(results: list[InflightResult], latency_ms: int) -> None:
    if not results:
        return
    ideal = results[0].clients / (latency_ms / 1000)
    print(
        f"\n{results[0].clients:,} clients back to back, agent latency {latency_ms / 1000:g} s, "
        f"one app process (ideal {ideal:.0f} turns/s; targets: 0 errors, >= "
        f"{INFLIGHT_SHARE_TARGET:.0%} of ideal, app RSS <= {RSS_TARGET_MB} MB)"
    )
    head = (
        f"{'side':<7} {'in flight':>9} {'warm s':>6} {'window s':>8} {'turns':>6} "
        f"{'turns/s':>8} {'of ideal':>8} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MB':>11} "
        f"{'VmHWM MB':>8} {'threads':>7}  errors in window (whole phase)"
    )
    print(head + "\n" + "-" * len(head))
    for r in results:
        memory = r.memory
        lat = r.latencies_ms
        print(
            f"{r.side:<7} {r.in_flight_mean:>9.0f} {r.warmed_s:>6.1f} {r.window_s:>8.0f} "
            f"{len(r.completed):>6} {r.rate:>8.1f} {r.rate / ideal:>8.0%} "
            f"{percentile(lat, 50):>8.0f} {percentile(lat, 99):>8.0f} "
            f"{memory.peak_rss_kb / 1024:>11.0f} {memory.hwm_kb / 1024:>8.0f} "
            f"{memory.peak_threads:>7}  {_errors(r.window_errors)} "
            f"({_errors(r.results.error_kinds())}); {r.abandoned} abandoned at the end"
            f"   [memory of the {r.memory_of}]"
        )
    by_side = {r.side: r for r in results}
    if {"app", "direct"} <= set(by_side):
        app, direct = by_side["app"], by_side["direct"]
        print(f"app/direct throughput: {app.rate / max(direct.rate, 1e-9):.2f}")
    print_cpu([(f"{r.side}", r.cpu, len(r.completed)) for r in results if r.cpu])
