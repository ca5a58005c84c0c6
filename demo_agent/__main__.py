"""`python -m demo_agent`: serve the demo agent under uvicorn.

Every flag falls back to an environment variable, so `make run` and CI can configure it without
editing command lines. argparse also checks the fallbacks (it parses string defaults like
arguments), so a bad DEMO_AGENT_* value fails the same way as a bad flag: a message, exit code 2.
"""

import argparse
import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_agent.config import (
    DEFAULT_STREAM_CHUNK_DELAY_MS,
    AgentConfig,
    Knobs,
    check_chunk_delay_ms,
    check_latency_ms,
    check_rate,
    check_seconds,
)


def _checked(
    convert: Callable[[str], Any], check: Callable[[Any], Any], env_name: str
) -> Callable[[str], Any]:
    """An argparse type: convert the text, then apply the same check /_demo/config uses."""

    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except ValueError as exc:
            # The value may have come from the environment; say where else to look.
            raise argparse.ArgumentTypeError(f"{text!r} {exc} (flag or {env_name})") from None

    return parse


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port, 1..65535")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be an integer") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo_agent",
        description="A demo agent speaking the Databricks Model Serving protocol, "
        "returning real MLflow traces. Each flag falls back to the environment variable shown.",
    )

    def add(flag: str, env_name: str, default: str | None, help: str, **kwargs: Any) -> None:
        # A string default is parsed like a command-line value, so env values get checked too.
        value = os.environ.get(env_name) or default
        parser.add_argument(flag, default=value, help=f"[{env_name}] {help}", **kwargs)

    add("--host", "DEMO_AGENT_HOST", "127.0.0.1", "interface, default 127.0.0.1")
    add(
        "--port",
        "DEMO_AGENT_PORT",
        "8001",
        "TCP port, default 8001",
        type=_checked(_integer, _port, "DEMO_AGENT_PORT"),
    )
    add(
        "--latency-ms",
        "DEMO_AGENT_LATENCY_MS",
        "0",
        "extra wait on every serving request, default 0",
        type=_checked(_integer, check_latency_ms, "DEMO_AGENT_LATENCY_MS"),
    )
    add(
        "--cold-start-s",
        "DEMO_AGENT_COLD_START_S",
        "0",
        "the first serving request waits this long, default 0",
        type=_checked(_number, check_seconds, "DEMO_AGENT_COLD_START_S"),
    )
    add(
        "--stream-chunk-delay-ms",
        "DEMO_AGENT_STREAM_CHUNK_DELAY_MS",
        str(DEFAULT_STREAM_CHUNK_DELAY_MS),
        f"pause between two events of a streamed answer, default {DEFAULT_STREAM_CHUNK_DELAY_MS}",
        type=_checked(_integer, check_chunk_delay_ms, "DEMO_AGENT_STREAM_CHUNK_DELAY_MS"),
    )
    for flag, env_name, what in (
        ("--error-rate", "DEMO_AGENT_ERROR_RATE", "invocations answered 500"),
        ("--malformed-rate", "DEMO_AGENT_MALFORMED_RATE", "invocations answered with garbage"),
        ("--feedback-error-rate", "DEMO_AGENT_FEEDBACK_ERROR_RATE", "feedback posts answered 503"),
    ):
        add(
            flag,
            env_name,
            "0",
            f"fraction (0.0..1.0) of {what}, default 0",
            type=_checked(_number, check_rate, env_name),
        )
    add(
        "--token",
        "DEMO_AGENT_TOKEN",
        None,
        "when set, required as Bearer token or HTTP basic token:<token>",
    )
    add(
        "--feedback-log",
        "DEMO_AGENT_FEEDBACK_LOG",
        "var/demo_agent/feedback.jsonl",
        "JSONL file feedback records are appended to",
        type=Path,
    )
    add(
        "--seed",
        "DEMO_AGENT_SEED",
        None,
        "seed for the random draws of the *_rate knobs",
        type=_checked(_integer, lambda v: v, "DEMO_AGENT_SEED"),
    )
    parser.add_argument(
        "--no-traces",
        action="store_true",
        default=os.environ.get("DEMO_AGENT_NO_TRACES", "").lower() in ("1", "true", "yes"),
        help="[DEMO_AGENT_NO_TRACES] answer without making MLflow traces (making one is about "
        "half of a turn's CPU; benchmarks of the app's proxy use this)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        knobs=Knobs(
            latency_ms=args.latency_ms,
            cold_start_s=args.cold_start_s,
            error_rate=args.error_rate,
            malformed_rate=args.malformed_rate,
            feedback_error_rate=args.feedback_error_rate,
            stream_chunk_delay_ms=args.stream_chunk_delay_ms,
        ),
        token=args.token,
        feedback_log=args.feedback_log,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    # Fail now, with a usage message, rather than on the first feedback post.
    try:
        if config.feedback_log.is_dir():
            raise IsADirectoryError("is a directory")
        config.feedback_log.parent.mkdir(parents=True, exist_ok=True)
        config.feedback_log.touch(exist_ok=True)
    except OSError as exc:
        build_parser().error(f"argument --feedback-log: {config.feedback_log}: {exc}")

    # Imported only now: MLflow takes a second or two to import, and `--help` or a bad flag
    # should answer at once.
    import uvicorn

    from demo_agent.app import create_app

    if args.no_traces:
        import mlflow

        mlflow.tracing.disable()  # spans become no-ops; replies carry no trace
    app = create_app(config)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config.setdefault("filters", {})["hide_simulated_stream_cuts"] = {
        "()": "demo_agent.streams.HideSimulatedStreamCuts"
    }
    log_config["loggers"]["uvicorn.error"]["filters"] = ["hide_simulated_stream_cuts"]
    print(f"demo agent listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        log_config=log_config,
        # SIGTERM should stop it promptly even with slow simulated requests in flight.
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
