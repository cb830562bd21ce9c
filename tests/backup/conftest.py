"""The code-flow fixtures of tests/oauth, for backups of a database with grants."""

from tests.oauth.conftest import flow, keys, make_client, rp  # noqa: F401 - fixtures
