"""The example CI pipeline (examples/ci/evaluate.yml) runs as written: its `reviewapp` steps,
read from the workflow file itself, against the app under uvicorn, a real Celery worker on
Redis and the demo agent as the staging deployment. It passes on a healthy agent, fails the
build once the agent breaks (a regression from the baseline), and passes again once fixed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rest_framework.authtoken.models import Token

from evaluation.models import Run, RunStatus

pytest_plugins = ["tests.support.asgi_server"]
pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci"


def pipeline_steps() -> list[dict]:
    workflow = yaml.safe_load((EXAMPLE / "evaluate.yml").read_text())
    steps = workflow["jobs"]["evaluate"]["steps"]
    return [step for step in steps if step.get("run", "").startswith("reviewapp")]


def run_pipeline(env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Each step in order, as the CI runner would: stop at the first that fails, except the
    steps marked `if: always()`."""
    done, failed = [], False
    for step in pipeline_steps():
        if failed and step.get("if") != "always()":
            continue
        result = subprocess.run(["bash", "-c", step["run"]], cwd=EXAMPLE, env=env,
                                capture_output=True, text=True, timeout=180)  # fmt: skip
        done.append(result)
        failed = failed or result.returncode != 0
    return done


def test_the_example_pipeline_gates_on_a_regression(
    celery_worker_on_redis, asgi_live_server, demo_agent, admin_user
):
    assert [s["name"] for s in pipeline_steps()][:3] == [
        "Apply the configuration (deployments, label schemas)",
        "Send the questions to staging",
        "Evaluate the answers; fail on a low score or a regression",
    ]
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "REVIEWAPP_URL": asgi_live_server.url,
        "REVIEWAPP_TOKEN": Token.objects.create(user=admin_user).key,
        "STAGING_AGENT_URL": demo_agent.url,
        "COLUMNS": "200",
    }
    healthy = run_pipeline({**env, "RUN_ID": "1", "BASELINE_RUN": ""})
    assert [r.returncode for r in healthy] == [0, 0, 0, 0], [r.stderr for r in healthy]
    assert "2 object(s) changed." in healthy[0].stdout
    assert Run.objects.get(name="eval-1").status == RunStatus.COMPLETED

    demo_agent.configure(error_rate=1.0)  # staging breaks: every answer is an error
    broken = run_pipeline({**env, "RUN_ID": "2", "BASELINE_RUN": "eval-1"})
    assert [r.returncode for r in broken[:3]] == [0, 0, 1], [r.stderr for r in broken]
    assert "No changes" in broken[0].stdout  # the configuration was applied already
    assert "FAILED: errors regressed from 0 to 1 (base eval-1)" in broken[2].stderr
    assert "FAILED: contains has no value" in broken[2].stderr
    assert broken[3].returncode == 0  # `if: always()`: the rows are shown anyway

    demo_agent.configure(error_rate=0.0)
    fixed = run_pipeline({**env, "RUN_ID": "3", "BASELINE_RUN": "eval-1"})
    assert [r.returncode for r in fixed] == [0, 0, 0, 0], [r.stderr for r in fixed]
    assert "All gates passed." in fixed[2].stdout
