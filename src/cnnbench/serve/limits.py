"""The service's default limits, in one place (imported by the CLI without loading FastAPI).

Each bounds one resource, so the server's memory is bounded by its settings whatever the
clients send: bodies by ``max_upload_mb``; one decode by ``max_pixels``; concurrent large
decodes by ``large_decodes``; threads (each holding at most one decode) by ``workers``; the
time a connection may hold them while its request trickles in by ``body_timeout``.
"""

from __future__ import annotations

from cnnbench.env import usable_cpus

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_LARGE_DECODES",
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_WORKERS",
    "LARGE_DECODE_PIXELS",
    "default_workers",
]

# Decoded pixels above which an upload is refused unread: 2048 x 2048. The models served
# here take 32 x 32 to 224 x 224 inputs, so nothing is gained above that but memory (a
# 4.2 MP RGBA decode is 17 MB per copy). JPEGs are counted after reduced-scale decoding (a
# 4000 x 3000 photo decodes at 500 x 375 for a 32 x 32 model), so camera photos pass.
DEFAULT_MAX_PIXELS = 2048 * 2048
LARGE_DECODE_PIXELS = 1024 * 1024  # decodes above this take one of the large-decode slots
DEFAULT_LARGE_DECODES = 2  # large decodes at once
DEFAULT_MAX_FILES = 32  # images per /predict/batch request
DEFAULT_WORKERS = 4  # decode-and-predict threads at most by default; not one per core
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a request head, then its body: 10 MB at 4 Mbit/s is 20 s


def default_workers() -> int:
    """``DEFAULT_WORKERS``, or the number of cores when there are fewer."""
    return max(1, min(DEFAULT_WORKERS, usable_cpus()))
