"""The image's HEALTHCHECK: exit 0 when /readyz answers 200, 1 otherwise, with one line.

/readyz checks the database too, so an instance that cannot reach it is unhealthy and a load
balancer that follows Docker's health takes it out. HEALTHCHECK_URL overrides the address
(the default matches the image's `serve --port 8000`).
"""

import os
import sys
import urllib.error
import urllib.request
from http import HTTPStatus

URL = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000/readyz")
# Straight to the server: an HTTP_PROXY in the container's environment is not for this.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def main() -> int:
    try:
        with DIRECT.open(URL, timeout=4) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"unhealthy: {URL}: {getattr(error, 'reason', error)}")
        return 1
    if status != HTTPStatus.OK:
        print(f"unhealthy: {URL}: HTTP {status}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
