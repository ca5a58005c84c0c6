"""Helpers shared by the test suite."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Real MLflow traces and agent replies, kept beside the repo in ../shared (CI puts it there too).
SHARED_FIXTURES = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared")) / "fixtures"
