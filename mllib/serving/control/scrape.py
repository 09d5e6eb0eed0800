"""A server's /metrics read from outside (`mllib deploy status`): request and 5xx counts and the
latency histogram of one scrape, the difference between two, and quantiles from it. The metric
names are the ones server/metrics.py records.
"""

from __future__ import annotations

from dataclasses import dataclass


def scrape(url: str) -> Totals | None:
    """The totals of the server at `url` now (None when it does not answer)."""
    import httpx

    try:
        response = httpx.get(f"{url}/metrics", timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse(response.text)


@dataclass(frozen=True)
class Totals:
    """Cumulative figures read from one scrape of /metrics."""

    requests: float
    server_errors: float  # 5xx
    buckets: tuple[tuple[float, float], ...]  # (upper bound s, cumulative count)

    def minus(self, earlier: Totals) -> Totals:
        previous = dict(earlier.buckets)
        return Totals(
            self.requests - earlier.requests,
            self.server_errors - earlier.server_errors,
            tuple((le, count - previous.get(le, 0.0)) for le, count in self.buckets),
        )


def parse(text: str) -> Totals:
    """Request and error counts and the latency histogram from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mllib_requests_total":
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
            elif sample.name == "mllib_request_duration_seconds_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return Totals(requests, errors, tuple(sorted(buckets.items())))


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The q-quantile (seconds) from cumulative histogram buckets, interpolated as Prometheus does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            fraction = (rank - lower_count) / span if span > 0 else 0.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound
