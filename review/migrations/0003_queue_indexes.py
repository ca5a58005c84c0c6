"""Indexes for Next at 100,000 items (bench/review_queue.py): the claimable slots of a session and
a reviewer's slots and skips, each in item order."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0002_label_schemas"),
        ("review", "0002_mlflow_mirror"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="reviewskip",
            index=models.Index(fields=["reviewer", "item"], name="review_skip_mine"),
        ),
        migrations.AddIndex(
            model_name="reviewslot",
            index=models.Index(
                condition=models.Q(("state__in", ["open", "claimed"])),
                fields=["session", "item", "id"],
                include=("state", "lease_until"),
                name="review_slot_claimable",
            ),
        ),
        migrations.AddIndex(
            model_name="reviewslot",
            index=models.Index(
                fields=["reviewer", "session", "item"], name="review_slot_mine_items"
            ),
        ),
    ]
