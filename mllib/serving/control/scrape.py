"""A server's /metrics read from outside (`mllib deploy status`): request and 5xx counts and the
latency histogram of one scrape, the difference between two, and quantiles from it. The metric
names are the ones server/metrics.py records.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Cumulative figures read from one scrape of /metrics (all requests, and per variant:
    `variants`, keyed by the `variant` label)."""

    requests: float
    server_errors: float  # 5xx
    buckets: tuple[tuple[float, float], ...]  # (upper bound s, cumulative count)
    variants: dict[str, Totals] = field(default_factory=dict)

    def minus(self, earlier: Totals) -> Totals:
        previous = dict(earlier.buckets)
        return Totals(
            self.requests - earlier.requests,
            self.server_errors - earlier.server_errors,
            tuple((le, count - previous.get(le, 0.0)) for le, count in self.buckets),
            {
                name: totals.minus(earlier.variants.get(name, EMPTY))
                for name, totals in self.variants.items()
            },
        )


def parse(text: str) -> Totals:
    """Request and error counts and the latency histogram from Prometheus text, in all and per
    variant."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, list[float]] = {}  # variant -> [requests, errors]
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            variant = sample.labels.get("variant", "")
            if sample.name == "mllib_requests_total":
                count = counts.setdefault(variant, [0.0, 0.0])
                count[0] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    count[1] += sample.value
            elif sample.name == "mllib_request_duration_seconds_bucket":
                le = float(sample.labels["le"])
                mine = buckets.setdefault(variant, {})
                mine[le] = mine.get(le, 0.0) + sample.value
    variants = {
        name: Totals(*counts.get(name, (0.0, 0.0)), tuple(sorted(buckets.get(name, {}).items())))
        for name in set(counts) | set(buckets)
    }
    everything: dict[float, float] = {}
    for totals in variants.values():
        for le, count in totals.buckets:
            everything[le] = everything.get(le, 0.0) + count
    return Totals(
        sum(t.requests for t in variants.values()),
        sum(t.server_errors for t in variants.values()),
        tuple(sorted(everything.items())),
        {name: totals for name, totals in variants.items() if name},
    )


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


EMPTY = Totals(0.0, 0.0, ())
