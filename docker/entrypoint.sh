#!/bin/sh
# Container entry point. `serve` (the default command) first runs `identity init`, which
# creates or upgrades the database and the signing keys and is safe to repeat; on an empty
# database it prints the bootstrap admin's password once, to the container log.
# Any other command runs as `identity <command>`, e.g. `docker compose run --rm identity
# clients list`.
set -eu

if [ "${1:-}" = "serve" ]; then
    identity init
fi
exec identity "$@"
