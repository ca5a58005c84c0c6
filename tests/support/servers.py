"""What the suite's server subprocesses (demo agent, mlflow server) share: a free port, waiting
for a health URL, and starting again when another process took the port first."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx

Server = TypeVar("Server")
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, check_alive: Callable[[], None], timeout_s: float) -> float | None:
    """Seconds until `url` answered 200, or None if it did not within `timeout_s`.
    `check_alive` raises when the process died, which ends the wait early."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        check_alive()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return None


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_on_free_port(
    start: Callable[[int], Server],
    wait: Callable[[Server], None],
    output: Callable[[Server], str],
    start_error: type[Exception],
) -> Iterator[Server]:
    """`start(attempt)` then `wait(server)`, yield it, and `server.stop()` on exit; if it failed
    because another process bound the probed port in between, try again on a new one."""
    for attempt in range(START_ATTEMPTS):
        server = start(attempt)
        try:
            wait(server)
            break
        except start_error:
            server.stop()
            if "address already in use" not in output(server).lower() or attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


def spawn_logged(argv: list[str], *, env: dict[str, str], log_path) -> subprocess.Popen:
    """A server subprocess writing to a file, not a pipe (nobody reads a pipe while tests run,
    and a full one would block it), in a session of its own so its group can be killed."""
    from tests.support import REPO_ROOT

    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class ServerProcess:
    """What a server subprocess's handle shares (mixed into a dataclass with `process` and
    `log_path`): its log, whether it still runs, waiting for its health URL, stopping it."""

    name = "server"
    start_error: type[Exception] = RuntimeError
    stop_timeout_s = 15.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise self.start_error(
                f"The {self.name} exited with code {self.process.returncode}:\n{self.log()[-6000:]}"
            )

    def require_health(self, url: str, timeout_s: float) -> None:
        if wait_for_health(url, self.check_alive, timeout_s) is None:
            raise self.start_error(
                f"The {self.name} did not answer {url} within {timeout_s:.0f} s:\n"
                f"{self.log()[-6000:]}"
            )

    def stop(self) -> None:
        stop_process(self.process, self.stop_timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
