from django.db import models


class AccessStamp(models.Model):
    """One row whose `value` moves whenever who may chat with what changes (users, groups,
    tokens, deployments): every web process compares it with the value its access cache was
    filled at (agents/access.py), so a change takes effect on the next turn everywhere."""

    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"access stamp {self.value}"
