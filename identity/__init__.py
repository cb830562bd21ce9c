"""identity: a self-hosted OpenID Connect provider."""

from __future__ import annotations

from typing import Any

from flask import Flask

from identity.settings import Settings, load_settings


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the WSGI app: an ordered list of setup steps, nothing else."""
    from identity import setup

    settings = settings or load_settings(**overrides)
    app = setup.make_flask(settings)
    setup.setup_runtime(app, settings)
    setup.setup_extensions(app, settings)
    setup.setup_web_security(app, settings)
    setup.setup_oauth(app, settings)
    setup.setup_blueprints(app)
    setup.setup_fast_paths(app)
    return app
