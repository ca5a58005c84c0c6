"""The printed tables: every side's latency or time to first token side by side, each with what
it adds to direct, its throughput against direct's and the CPU its proxy process used per turn;
the thousand-in-flight figures; where the CPU went; and the issue's targets, met or missed."""

from __future__ import annotations

from collections import Counter

from harness.machine import CpuUse
from harness.stats import percentile, percentiles

from .phases import DIRECT, InflightResult, RoundsResult

PCTS = (50, 90, 99)
# The targets for the app, against the same turns sent straight to the agent.
LATENCY_TARGET_CLIENTS = 50
ADDED_TARGETS_MS = {50: 10.0, 99: 30.0}
APP_CPU_TARGET_MS = 5.0  # per turn, the request-log row included
THROUGHPUT_SHARE_TARGET = 0.90  # of direct's turns/s
TTFT_TARGET_CLIENTS = 20
TTFT_TARGET_P50_MS = 5.0
INFLIGHT_SHARE_TARGET = 0.90  # of the ideal turns/s
RSS_TARGET_MB = 400
# The processes of the CPU table, in this order when they ran.
PROCESSES = ("app", "bare", "litellm", "agent", "PostgreSQL", "load client")


def _errors(counter: Counter) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in counter.most_common()) or "0"


def _verdict(value: float, ok: bool, target: str) -> str:
    shown = value if isinstance(value, int) else f"{value:.1f}"
    return f"{'met' if ok else 'MISSED'} ({shown} vs {target})"


def _num(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_rounds(results: list[RoundsResult], ttft: bool, agent_ms: int) -> None:
    if not results:
        return
    what = "Time to first token" if ttft else "Turn latency"
    print(
        f"\n{what}, ms, demo agent answering in {agent_ms} ms; '+pN' is the side's pN minus "
        "direct's, 'of direct' its turns/s over direct's, 'CPU' what its own process used a turn"
    )
    head = (
        f"{'clients':>7} {'side':<8} {'turns':>6} {'turns/s':>8} "
        + " ".join(f"{'p' + str(q):>7}" for q in PCTS)
        + f" {'max':>7} |"
        + " ".join(f"{'+p' + str(q):>7}" for q in PCTS)
        + f" | {'of direct':>9} | {'CPU ms':>6} | errors"
    )
    print(head + "\n" + "-" * len(head))
    for r in results:
        values = {side: r.values(side, ttft) for side in r.sides}
        direct = percentiles(values[DIRECT], PCTS) if DIRECT in r.sides else None
        for side in r.sides:
            row = percentiles(values[side], PCTS)
            added = [None] * len(PCTS)
            share = None
            if direct is not None and side != DIRECT:
                added = [v - d for v, d in zip(row, direct, strict=True)]
                share = r.rate(side) / max(r.rate(DIRECT), 1e-9)
            print(
                f"{r.clients:>7} {side:<8} {len(values[side]):>6} {r.rate(side):>8.1f} "
                + " ".join(f"{v:>7.1f}" for v in row)
                + f" {max(values[side], default=float('nan')):>7.1f} |"
                + " ".join(_num(a, 7) for a in added)
                + f" | {_num(share, 9, 2)} | {_num(r.proxy_cpu_ms(side), 6, 2)} | "
                + _errors(r.results[side].error_kinds())
            )
        _print_round_targets(r, values, ttft)
    print_cpu(
        [
            (f"{r.clients} clients, {side}", r.cpu[side], len(r.results[side].replies))
            for r in results
            for side in r.sides
        ]
    )


def _print_round_targets(r: RoundsResult, values: dict[str, list[float]], ttft: bool) -> None:
    if not {DIRECT, "app"} <= set(r.sides):
        return
    app_row = percentiles(values["app"], PCTS)
    direct_row = percentiles(values[DIRECT], PCTS)
    added = {q: a - d for q, a, d in zip(PCTS, app_row, direct_row, strict=True)}
    if ttft and r.clients == TTFT_TARGET_CLIENTS:
        verdicts = [
            "added p50 "
            + _verdict(added[50], added[50] <= TTFT_TARGET_P50_MS, f"<= {TTFT_TARGET_P50_MS:g}")
        ]
    elif not ttft and r.clients == LATENCY_TARGET_CLIENTS:
        verdicts = [
            f"added p{q} " + _verdict(added[q], added[q] <= limit, f"<= {limit:g}")
            for q, limit in ADDED_TARGETS_MS.items()
        ]
        cpu = r.proxy_cpu_ms("app")
        verdicts.append(
            "CPU a turn " + _verdict(cpu, cpu <= APP_CPU_TARGET_MS, f"<= {APP_CPU_TARGET_MS:g}")
        )
        share = 100 * r.rate("app") / max(r.rate(DIRECT), 1e-9)
        target = f">= {THROUGHPUT_SHARE_TARGET:.0%} of direct"
        verdicts.append(
            "turns/s " + _verdict(share, share >= 100 * THROUGHPUT_SHARE_TARGET, target)
        )
    else:
        return
    print(f"{'':>7} the app's targets: {', '.join(verdicts)}")


def print_cpu(rows: list[tuple[str, CpuUse, int]]) -> None:
    """CPU of each process as a share of all cores (50 % = one of two), and per turn."""
    names = [n for n in PROCESSES if any(n in use.seconds for _, use, _ in rows)]
    per_turn_names = [n for n in names if n != "load client"]
    head = (
        f"  {'CPU, % of all cores':<22} {'machine':>7} "
        + " ".join(f"{n:>11}" for n in names)
        + f" {'others':>7} | ms CPU per turn: "
        + " ".join(f"{n:>10}" for n in per_turn_names)
    )
    print(head)
    for label, use, turns in rows:
        per_turn = [1000 * use.seconds.get(n, 0.0) / max(turns, 1) for n in per_turn_names]
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
        f"one process per side (ideal {ideal:.0f} turns/s; the app's targets: 0 errors, >= "
        f"{INFLIGHT_SHARE_TARGET:.0%} of ideal, RSS <= {RSS_TARGET_MB} MB, no thread per "
        "waiting turn)"
    )
    head = (
        f"{'side':<8} {'in flight':>9} {'warm s':>6} {'window s':>8} {'turns':>6} "
        f"{'turns/s':>8} {'of ideal':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>6} "
        f"{'peak RSS MB':>11} {'VmHWM MB':>8} {'threads':>7}  errors in window (whole phase)"
    )
    print(head + "\n" + "-" * len(head))
    for r in results:
        memory = r.memory
        lat = r.latencies_ms
        print(
            f"{r.side:<8} {r.in_flight_mean:>9.0f} {r.warmed_s:>6.1f} {r.window_s:>8.0f} "
            f"{len(r.completed):>6} {r.rate:>8.1f} {r.rate / ideal:>8.0%} "
            f"{percentile(lat, 50):>8.0f} {percentile(lat, 99):>8.0f} "
            f"{_num(r.proxy_cpu_ms, 6, 2)} "
            f"{memory.peak_rss_kb / 1024:>11.0f} {memory.hwm_kb / 1024:>8.0f} "
            f"{memory.peak_threads:>7}  {_errors(r.window_errors)} "
            f"({_errors(r.results.error_kinds())}); {r.abandoned} abandoned at the end"
            f"   [memory of the {r.memory_of} process]"
        )
    by_side = {r.side: r for r in results}
    if DIRECT in by_side:
        direct = by_side[DIRECT]
        shares = [
            f"{side} {r.rate / max(direct.rate, 1e-9):.2f}"
            for side, r in by_side.items()
            if side != DIRECT
        ]
        if shares:
            print(f"throughput over direct's: {', '.join(shares)}")
    if "app" in by_side:
        _print_inflight_targets(by_side["app"], ideal)
    print_cpu([(f"{r.side}", r.cpu, len(r.completed)) for r in results if r.cpu])


def _print_inflight_targets(app: InflightResult, ideal: float) -> None:
    errors = sum(app.window_errors.values())
    share = 100 * app.rate / ideal
    rss = app.memory.peak_rss_kb / 1024
    # A thread per waiting turn would show as about as many threads as turns in flight.
    threads = app.memory.peak_threads
    verdicts = [
        "errors " + _verdict(errors, errors == 0, "0"),
        "turns/s " + _verdict(share, share >= 100 * INFLIGHT_SHARE_TARGET, ">= 90 % of ideal"),
        "RSS MB " + _verdict(rss, rss <= RSS_TARGET_MB, f"<= {RSS_TARGET_MB}"),
        "threads "
        + _verdict(threads, threads < app.in_flight_mean / 10, "< a tenth of the turns in flight"),
    ]
    print(f"the app's targets: {', '.join(verdicts)}")
