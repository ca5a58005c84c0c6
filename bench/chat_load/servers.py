"""One part's processes (a fresh app, the peers in front of the part's agent) and the clients
of each side: "direct" (the agent), "bare" and "litellm" (the peers), "app" (the chat API)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harness.processes import DemoAgent, Service, start_web

from .clients import AppClient, ForwardedClient
from .peers import LITELLM_MODEL, LiteLLMProxy, Peers

if TYPE_CHECKING:  # it imports Django models
    from harness.reviewers import Reviewer

SIDES = ("direct", "bare", "litellm", "app")


@dataclass
class Servers:
    agent: DemoAgent
    agent_path: str  # the deployment's invocations path on the agent
    web: Service
    web_port: int
    peers: dict[str, Service]  # the peers that started: "bare", "litellm"

    def sides(self, wanted: list[str]) -> list[str]:
        """The wanted sides that can be measured, in the order given."""
        return [s for s in wanted if s in ("direct", "app") or s in self.peers]

    @property
    def pids(self) -> dict[str, int]:
        """The processes whose CPU is counted, named as the side each is (and the agent)."""
        return {
            "app": self.web.pid,
            **{s: p.pid for s, p in self.peers.items()},
            "agent": self.agent.pid,
        }

    def process_of(self, side: str) -> tuple[str, int]:
        """The process that answers a side's clients (the agent for direct): name, pid."""
        if side == "direct":
            return "agent", self.agent.pid
        return side, self.pids[side]

    def clients(
        self,
        side: str,
        n: int,
        *,
        deployment,
        people: list[Reviewer],
        body: bytes,
        stream: bool = False,
    ) -> list:
        """`n` clients of a side. All but the app's send `body`, the request the app sent the
        agent (LiteLLM's with its model name added, to its OpenAI route)."""
        if side == "app":
            tokens = [people[i % len(people)].token for i in range(n)]
            return [AppClient(self.web_port, deployment.pk, t, stream) for t in tokens]
        if side == "direct":
            port, path, headers = self.agent.port, self.agent_path, {}
        elif side == "bare":
            port, path, headers = self.peers[side].port, self.agent_path, {}
        else:
            litellm = self.peers[side]
            assert isinstance(litellm, LiteLLMProxy)
            port, path = litellm.port, "/v1/chat/completions"
            headers = {"Authorization": f"Bearer {litellm.master_key}"}
            body = json.dumps({"model": LITELLM_MODEL, **json.loads(body)}).encode()
        return [ForwardedClient(side, port, path, body, stream, headers) for _ in range(n)]


@contextlib.contextmanager
def serving(agent: DemoAgent, invocations_url: str, peers: Peers, part: str) -> Iterator[Servers]:
    """A fresh app process (so its memory figures are its own) and the available peers in
    front of `agent`, all answering; stopped on the way out."""
    agent_path = urlsplit(invocations_url).path
    starting = peers.start(agent.url, agent_path, part)
    web = None
    try:
        web, base = start_web(1)
        running = peers.wait_ready(starting)
        yield Servers(agent, agent_path, web, int(base.rsplit(":", 1)[1]), running)
    finally:
        if web is not None:
            web.stop()
        for service in starting.values():
            service.stop()
