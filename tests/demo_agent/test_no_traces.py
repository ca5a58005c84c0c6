"""`--no-traces`: the demo agent answers as usual but makes no MLflow trace (the proxy
benchmark uses it, so the agent's own CPU does not decide the figures)."""

import httpx
import pytest

from tests.support.demo_agent import run_demo_agent

pytestmark = pytest.mark.integration
BODY = {
    "messages": [{"role": "user", "content": "What is MLflow tracing?"}],
    "databricks_options": {"return_trace": True},
}


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_no_traces_answers_without_a_trace(how):
    options = {"extra_env": {"DEMO_AGENT_NO_TRACES": "true"}} if how == "environment" else {}
    flags = {"no_traces": True} if how == "flag" else {}
    with run_demo_agent(**options, **flags) as agent:
        reply = httpx.post(agent.invocations_url(), json=BODY, timeout=30).json()
        log = agent.stderr()
    assert "MLflow Tracing" in reply["choices"][0]["message"]["content"]
    assert reply["databricks_output"].get("trace") is None
    assert "No active trace" not in log
