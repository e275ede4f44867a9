"""Request counts and latency percentiles for the server's /metrics endpoint, in bounded memory."""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np

LATENCY_WINDOW = 10_000  # latencies kept per endpoint (the most recent ones)


class ServerStats:
    """Counts requests per endpoint and status, keeps recent latencies, counts model batches.

    Used from the event loop thread only, so it needs no lock.
    """

    def __init__(self, *, window: int = LATENCY_WINDOW) -> None:
        self.started = time.monotonic()
        self.window = window
        self.counts: Counter[tuple[str, int]] = Counter()
        self.latencies: dict[str, deque[float]] = {}
        self.batch_sizes: Counter[int] = Counter()

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request of `endpoint` (e.g. "POST /predict") and keep its latency."""
        self.counts[endpoint, status] += 1
        self.latencies.setdefault(endpoint, deque(maxlen=self.window)).append(seconds)

    def record_batch(self, size: int) -> None:
        """Count one model call on `size` images."""
        self.batch_sizes[size] += 1

    def snapshot(self) -> dict:
        """JSON-able: uptime, requests {endpoint: {status: count}}, latency_ms {endpoint: count/mean/p50/p90/p99/max}
        over the most recent `window` requests, batches {count, images, mean_size, max_size}."""
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.counts.items()):
            requests.setdefault(endpoint, {})[str(status)] = count
        latency = {}
        for endpoint, values in sorted(self.latencies.items()):
            ms = np.asarray(values) * 1000.0
            p50, p90, p99 = np.percentile(ms, [50, 90, 99])
            latency[endpoint] = {"count": len(ms), "mean": float(ms.mean()), "p50": float(p50), "p90": float(p90),
                                 "p99": float(p99), "max": float(ms.max())}
        batches = sum(self.batch_sizes.values())
        images = sum(size * n for size, n in self.batch_sizes.items())
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": requests,
            "latency_ms": latency,
            "batches": {"count": batches, "images": images, "mean_size": images / batches if batches else 0.0,
                        "max_size": max(self.batch_sizes, default=0)},
        }
