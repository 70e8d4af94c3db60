"""The ``serve`` section of params.yaml: how ``starflow serve`` (flows/deployments.py) schedules retraining.

A module of its own, beside the deployments that use it, so that flows/config.py can put it in
the params tree without importing the deployments (which import the pipeline, which imports
flows/config.py).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import field_validator

from ray_tasks.params import StageParams


class ServeParams(StageParams):
    """How `starflow serve` schedules retraining (``params.yaml: serve``)."""

    cron: str | None = "0 3 * * 0"
    """Retraining schedule of the pipeline deployment (cron syntax); null for no schedule."""
    timezone: str = "UTC"
    """IANA time zone the cron is read in (e.g. Europe/Paris)."""
    slug: str = "retrain"
    """Stable id of the schedule: a redeploy updates this schedule and keeps it paused if paused."""
    active: bool = True
    """Whether the schedule is active when first created; later its state is the UI's (pause/resume)."""

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        # cronsim is the parser Prefect's scheduler uses, so what passes here is what it fires.
        if value is not None:
            try:
                CronSim(value, datetime(2000, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"not a cron expression: {value!r} ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value
