"""/admin: the dashboard (identity.admin.overview reads it, identity.admin.charts draws)."""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from identity.admin import charts
from identity.admin.console import CONSOLE, page, render
from identity.admin.overview import overview
from identity.extensions import db


@page("/", CONSOLE)
def dashboard() -> ResponseReturnValue:
    facts = overview(db.session())
    day = charts.stacked(
        [(f"{b.start:%H}:00", b.succeeded, b.failed) for b in facts.last_day],
        label_every=3,
        unit=" UTC",
    )
    week = charts.stacked([(f"{b.start:%a %d}", b.succeeded, b.failed) for b in facts.last_week])
    return render("dashboard.html", facts=facts, day=day, week=week)
