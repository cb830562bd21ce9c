"""Liveness and readiness probes (REL-02, REL-30): no details, no authentication needed."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from identity.errors import machine_facing
from identity.extensions import db, limiter
from identity.rbac.access import serves

bp = serves(machine_facing(Blueprint("health", __name__)), "public", "liveness and readiness only")
log = logging.getLogger("identity.health")


@bp.get("/healthz")
@limiter.exempt
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> ResponseReturnValue:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("database not reachable", extra={"event": "health.db_down"})
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")
