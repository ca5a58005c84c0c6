"""The proxies measured beside the app, against the same agent in the same run: a bare asyncio
proxy (bench/bare_proxy.py: the floor) and LiteLLM's proxy. Neither is the app's requirement:
both run from a virtualenv of the benchmark's own, made on first use and reused after (under
~/.cache/reviewapp-bench/, or $REVIEWAPP_BENCH_VENV). A side that cannot be installed or
started here is reported as such, with why, and the run goes on without it. Needs no Django.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import config
from harness.processes import Service, free_port

BENCH_DIR = Path(__file__).resolve().parents[1]
BENCH_VENV = Path(
    os.environ.get("REVIEWAPP_BENCH_VENV", Path.home() / ".cache" / "reviewapp-bench" / "venv")
)
# Pinned, so that every run measures the same code. The same aiohttp as constraints.txt and the
# same uvloop as requirements.txt (the app's uvicorn runs on it too).
BARE_REQUIREMENTS = ("aiohttp==3.14.5", "uvloop==0.23.0")
# 1.108.7 is the newest LiteLLM whose [proxy] extra installs from the package registry this
# project can reach: from 1.109 on it needs litellm-proxy(-extras) releases that are not there.
LITELLM_REQUIREMENTS = ("litellm[proxy]==1.108.7",)
LITELLM_MODEL = "bench-agent"  # the model name its clients ask for
PEERS = ("bare", "litellm")


class Unavailable(Exception):
    """A side that cannot run here; the message says why."""


class BenchVenv:
    """The benchmark's virtualenv: made with this Python's interpreter, each requirement
    installed once (the lines installed are kept in a file beside it)."""

    def __init__(self, path: Path = BENCH_VENV):
        self.path = path
        self.python = path / "bin" / "python"
        self.installed_list = path / "bench-requirements.txt"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def _installed(self) -> set[str]:
        if not self.installed_list.exists():
            return set()
        return set(self.installed_list.read_text().split())

    def ensure(self, requirements: tuple[str, ...]) -> None:
        missing = [r for r in requirements if r not in self._installed()]
        if not missing:
            return
        log = config.VAR_DIR / "bench-venv-pip.log"
        if not self.python.exists():
            base = Path(sys.base_prefix) / "bin" / "python3"  # this interpreter, not its venv
            self._run([str(base), "-m", "venv", str(self.path)], log, "making the virtualenv")
        print(f"  installing {' '.join(missing)} into {self.path} (once)", flush=True)
        started = time.monotonic()
        self._run([str(self.python), "-m", "pip", "install", *missing], log, "pip install")
        print(f"  installed in {time.monotonic() - started:.0f} s", flush=True)
        with self.installed_list.open("a") as installed:
            installed.write("".join(f"{r}\n" for r in missing))

    @staticmethod
    def _run(argv: list[str], log: Path, what: str) -> None:
        with log.open("ab") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            lines = log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
            raise Unavailable(f"{what} failed ({done.returncode}): {' / '.join(errors[-3:])}")


class BareProxy(Service):
    """bench/bare_proxy.py in front of `upstream` (the agent's base URL)."""

    def __init__(self, venv: BenchVenv, upstream: str, name: str):
        self.port = free_port()
        argv = [str(venv.python), str(BENCH_DIR / "bare_proxy.py"), "--port", str(self.port)]
        super().__init__(name, [*argv, "--upstream", upstream])

    def ready(self) -> None:
        self.wait_for(f"http://127.0.0.1:{self.port}/health")


class LiteLLMProxy(Service):
    """`litellm --config ... --num_workers 1`: one model, LITELLM_MODEL, routed by its OpenAI
    provider to `api_base` (the agent's endpoint, to which it appends /chat/completions). A
    master key of this run's (LiteLLM refuses to start without one) is what clients send; no
    database, no cache: LiteLLM as its quick start runs it."""

    def __init__(self, venv: BenchVenv, api_base: str, name: str):
        self.port = free_port()
        self.master_key = "sk-bench-" + secrets.token_hex(16)
        endpoint = api_base.rstrip("/").rsplit("/", 1)[1]
        settings = {
            "model_list": [
                {
                    "model_name": LITELLM_MODEL,
                    "litellm_params": {
                        "model": f"openai/{endpoint}",
                        "api_base": api_base,
                        "api_key": "none",  # the demo agent asks for none; the SDK needs one
                    },
                }
            ]
        }
        config_path = config.VAR_DIR / f"{name}.yaml"
        config_path.write_text(json.dumps(settings, indent=2))  # JSON is YAML
        argv = [str(venv.bin("litellm")), "--config", str(config_path), "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--num_workers", "1"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LITELLM_MASTER_KEY": self.master_key,
            # Its price list from the bundled copy: no download at start (there is no internet).
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # No line logged per request (its uvicorn's access log is at INFO), as the app
            # runs with --no-access-log.
            "LITELLM_LOG": "WARNING",
        }
        # Its own environment only (not the app's DATABASE_URL, which LiteLLM would use), and
        # the temp dir as its working directory (no .env of the repository).
        super().__init__(name, argv, env, inherit_env=False, cwd=config.VAR_DIR)

    def ready(self) -> None:
        self.wait_for(f"http://127.0.0.1:{self.port}/health/liveliness", timeout_s=240)


@dataclass
class Peers:
    """The peer sides asked for, and why those that cannot run here do not."""

    wanted: list[str]
    venv: BenchVenv = field(default_factory=BenchVenv)
    unavailable: dict[str, str] = field(default_factory=dict)

    def prepare(self) -> None:
        """Install what the wanted sides need (the first run only)."""
        needs = {"bare": BARE_REQUIREMENTS, "litellm": BARE_REQUIREMENTS + LITELLM_REQUIREMENTS}
        for side in self.wanted:
            try:
                self.venv.ensure(needs[side])
            except (Unavailable, OSError) as exc:
                self._drop(side, str(exc))

    def _drop(self, side: str, why: str) -> None:
        self.unavailable.setdefault(side, why)
        print(f"  {side}: NOT MEASURED: {why}", flush=True)

    @property
    def available(self) -> list[str]:
        return [side for side in self.wanted if side not in self.unavailable]

    def start(self, agent_url: str, endpoint_path: str, part: str) -> dict[str, Service]:
        """The available peers in front of the agent, answering; one that fails to start is
        dropped (with its log's tail as the reason)."""
        api_base = agent_url + endpoint_path.removesuffix("/invocations")
        starting: dict[str, Service] = {}
        for side in self.available:
            try:
                if side == "litellm":  # it takes the longest to start: first
                    starting[side] = LiteLLMProxy(self.venv, api_base, f"litellm-{part}")
                else:
                    starting[side] = BareProxy(self.venv, agent_url, f"bare-proxy-{part}")
            except OSError as exc:
                self._drop(side, f"could not start: {exc}")
        return starting

    def wait_ready(self, starting: dict[str, Service]) -> dict[str, Service]:
        running = {}
        for side, service in starting.items():
            try:
                service.ready()
            except RuntimeError as exc:
                service.stop()
                self._drop(side, f"did not start: {str(exc)[-600:]}")
            else:
                running[side] = service
        return running
