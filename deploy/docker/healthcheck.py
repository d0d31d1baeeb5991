"""Container HEALTHCHECK: GET /healthz on this container's service (the slim image has no curl).

The port is HTTP_PORT when set; otherwise the default port of $SERVICE is tried first and then the
others, so `docker run IMAGE notifier` is still checked correctly without extra environment.
"""

import os
import sys
import urllib.request

from shared.services import DEFAULT_PORTS  # the image's venv has the project installed


def candidate_ports() -> list[int]:
    if os.environ.get("HTTP_PORT"):
        return [int(os.environ["HTTP_PORT"])]
    first = DEFAULT_PORTS.get(os.environ.get("SERVICE", ""))
    rest = [p for p in DEFAULT_PORTS.values() if p != first]
    return [first, *rest] if first else rest


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if any(healthy(port) for port in candidate_ports()) else 1)
