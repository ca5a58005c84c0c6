"""What a benchmark script does before importing Django's models: the repository on the import
path, a throw-away VAR_DIR, the settings module, and its database: a throw-away SQLite file, or
with BENCH_DATABASE_URL=postgres://…/<scratch database> that PostgreSQL database (its tables are
migrated and filled: never point it at a database you keep)."""

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def configure(prefix: str) -> Path:
    """Set the environment up and call django.setup(); returns the VAR_DIR it made."""
    # First on the path, before this folder: bench/review.py would shadow the `review` app.
    sys.path.insert(0, str(REPO_ROOT))
    var_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "reviewapp.settings"})
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)
    os.environ.pop("DATABASE_URL", None)
    if os.environ.get("BENCH_DATABASE_URL"):
        os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    import django

    django.setup()
    return var_dir
