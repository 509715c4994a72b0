"""Keep-warm: how many inference containers to hold at a given moment.

A scheduled function re-applies this every few minutes (idempotent, so a missed run heals at
the next one): `warm_containers` inside the configured days and hours, in the configured time
zone, and zero outside them, so the GPU costs nothing overnight.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from infra.settings import DeploySettings

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def desired_min_containers(now: datetime, settings: DeploySettings) -> int:
    """`min_containers` for the inference class at `now` (an aware datetime, any zone)."""
    local = now.astimezone(ZoneInfo(settings.warm_timezone))
    in_day = _WEEKDAYS[local.weekday()] in settings.warm_days
    in_hours = settings.warm_start_hour <= local.hour < settings.warm_end_hour
    return settings.warm_containers if in_day and in_hours else 0


def warm_hours_per_week(settings: DeploySettings) -> int:
    """Hours a week inside the keep-warm window: what `warm_containers` GPUs are billed for
    even with no traffic (docs/deploy.md's cost table)."""
    hours = max(0, settings.warm_end_hour - settings.warm_start_hour)
    return len(set(settings.warm_days)) * hours if settings.warm_containers else 0
