#!/bin/sh
# The container's entry point (docker/Dockerfile: ENTRYPOINT, default CMD `start ...`).
#
#   start ARGS    `identity init`, then `identity serve ARGS`: one container on its own.
#                 init creates or upgrades the database and the signing keys and is safe
#                 to repeat; on an empty database it prints the bootstrap admin's password
#                 once, to the container log.
#   anything else `identity ARGS`: `serve ...` serves without init (several instances,
#                 after a one-shot `init` service: docker/compose.yaml), `init`,
#                 `clients list`, `check`, ...
#
# The server replaces this shell (exec): it is the process `docker stop` sends SIGTERM to,
# and it stops gracefully. A failing init stops here, with its exit status.
set -eu

if [ "${1:-}" = "start" ]; then
    shift
    identity init
    exec identity serve "$@"
fi
exec identity "$@"
