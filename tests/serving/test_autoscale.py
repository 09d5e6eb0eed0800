"""The scaling policy, fed the measurements a controller would read each tick (every 0.1 s of a
simulated clock): when it adds replicas, when it removes them, and that it never flaps."""

from __future__ import annotations

from mllib.serving.control.autoscale import Autoscaler, Decision, Scaling, share_replicas

TICK = 0.1


def run(scaler: Autoscaler, seconds: float, start: float, replicas: int, load) -> tuple:
    """Observe `load(t, replicas) -> (in_flight, p99_s)` for `seconds`; apply each decision."""
    decisions: list[tuple[float, Decision]] = []
    t = start
    while t < start + seconds:
        in_flight, p99 = load(t, replicas)
        decision = scaler.observe(t, in_flight=in_flight, p99_s=p99, replicas=replicas)
        if decision is not None:
            decisions.append((t, decision))
            replicas = decision.replicas
        t += TICK
    return decisions, replicas, t


def queue(rate: float, service_s: float):
    """In flight and p99 of `rate` requests/s shared by the replicas, each serving one at a
    time in `service_s` (an M/M/1 queue per replica: a load that depends on the replicas)."""

    def load(t: float, replicas: int) -> tuple[float, float]:
        rho = min(0.99, rate * service_s / replicas)
        per_replica = rho / (1 - rho)
        latency = service_s / (1 - rho)
        return per_replica * replicas, latency * 3

    return load


def test_it_scales_up_at_once_to_what_the_load_needs_within_its_maximum():
    scaler = Autoscaler(Scaling(min_replicas=1, max_replicas=4, target_inflight=4))
    decisions, replicas, _ = run(scaler, 2.0, 0.0, 1, lambda t, n: (13.0, 0.01))
    ((when, decision),) = decisions
    assert when <= 1.0 and decision.direction == "up" and replicas == 4
    assert decision.reason == "13.0 requests in flight > 4 per replica × 1"
    _, replicas, _ = run(
        Autoscaler(Scaling(max_replicas=3, target_inflight=4)), 2.0, 0.0, 1, lambda t, n: (99, 0.01)
    )
    assert replicas == 3  # never past max_replicas


def test_a_p99_nearing_the_objective_adds_a_replica_while_requests_queue():
    scaler = Autoscaler(Scaling(max_replicas=4, target_inflight=8, p99_objective_ms=100))
    decisions, replicas, _ = run(scaler, 0.3, 0.0, 2, lambda t, n: (3.0, 0.09))
    assert replicas == 3 and "p99 90ms is near the 100ms objective" in decisions[0][1].reason
    lone = Autoscaler(Scaling(max_replicas=4, target_inflight=8, p99_objective_ms=100))
    # A slow model with nothing queued: another replica would not make it faster.
    assert run(lone, 3.0, 0.0, 2, lambda t, n: (1.0, 0.5))[0] == []


def test_it_scales_down_one_replica_at_a_time_only_after_the_quiet_period():
    scaler = Autoscaler(Scaling(max_replicas=3, target_inflight=2, scale_down_after_s=30))
    _, replicas, t = run(scaler, 5.0, 0.0, 1, lambda t, n: (10.0, 0.02))
    assert replicas == 3
    decisions, replicas, t2 = run(scaler, 29.0, t, replicas, lambda t, n: (0.5, 0.02))
    assert decisions == [] and replicas == 3  # not before 30 s of quiet
    decisions, replicas, _ = run(scaler, 40.0, t2, replicas, lambda t, n: (0.5, 0.02))
    assert [d.replicas for _, d in decisions] == [2, 1]
    assert all(d.direction == "down" for _, d in decisions)
    assert decisions[1][0] - decisions[0][0] >= 30  # each step waits its own quiet period


def test_a_steady_load_never_flaps():
    for rate in (150.0, 250.0, 380.0, 520.0):
        scaler = Autoscaler(Scaling(max_replicas=8, target_inflight=2, scale_down_after_s=60))
        decisions, _, _ = run(scaler, 1800.0, 0.0, 1, queue(rate, 0.01))
        directions = [d.direction for _, d in decisions]
        reversals = [
            decisions[i][0] for i in range(1, len(decisions)) if directions[i] != directions[i - 1]
        ]
        for i, when in enumerate(reversals):  # at most one per 5 minutes
            assert not [r for r in reversals[i + 1 :] if r - when < 300], (rate, decisions)


def test_scaling_up_soon_after_scaling_down_doubles_the_next_quiet_period():
    scaler = Autoscaler(Scaling(max_replicas=4, target_inflight=2, scale_down_after_s=10))
    assert scaler.down_wait_s(0.0) == 10
    _, n, t = run(scaler, 2.0, 0.0, 1, lambda t, n: (6.0, 0.01))
    _, n, t = run(scaler, 12.0, t, n, lambda t, n: (0.2, 0.01))  # down once
    _, n, t = run(scaler, 2.0, t, n, lambda t, n: (9.0, 0.01))  # up again: a regret
    assert scaler.down_wait_s(t) == 20


def test_a_candidate_gets_replicas_in_proportion_to_its_share_of_requests():
    scaling = Scaling(max_replicas=4)
    # An A/B test at 50% beside 2 stable replicas: 2 of its own, each as loaded as stable's.
    assert share_replicas(2, 50, scaling) == 2
    assert share_replicas(2, 25, scaling) == 1 and share_replicas(3, 75, scaling) == 4  # ceiling
    assert share_replicas(1, 10, Scaling(min_replicas=2, max_replicas=4)) == 2  # min_replicas
    # A shadow's copies come on top of what stable answers: 100% copied needs stable's count.
    assert share_replicas(3, 100, scaling, copies=True) == 3
    assert share_replicas(3, 50, scaling, copies=True) == 2
