"""identity: a self-hosted OpenID Connect provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from identity.settings import Settings


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the WSGI app: an ordered list of setup steps, nothing else."""
    # Flask, the settings and the setup steps are imported here, not at the top: importing
    # the package (as `identity --help` does) must not load the web stack.
    from identity import factory
    from identity.settings import load_settings

    settings = settings or load_settings(**overrides)
    app = factory.make_flask(settings)
    factory.setup_runtime(app, settings)
    factory.setup_request_basics(app, settings)
    factory.setup_extensions(app, settings)
    factory.setup_web_security(app, settings)
    factory.setup_oauth(app, settings)
    factory.setup_blueprints(app)
    return app
