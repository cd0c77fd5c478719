"""A fleet on real network hosts: two ``axon-grpc serve`` hosts behind ``axon-grpc front``, Redis with Sentinel.

Every host is a network namespace with its own address on a bridge this test makes
(:class:`axon_grpc.fleet_lab.Lab`, removed at the end); the test process calls from the
bridge's address. The fault run with its figures is ``make fleet`` (scripts/fleet_faults.py).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from axon_grpc.fleet_calls import Caller, load, replay
from axon_grpc.fleet_lab import ADMIN_PORT, Lab, hotkey, netns_missing, wait_pool

from .edge.support import requires_pyvoy
from .redis_support import MISSING_REASON, in_ci

NETNS_MISSING = netns_missing()

pytestmark = [
    requires_pyvoy,
    pytest.mark.skipif(NETNS_MISSING is not None, reason=f"network namespaces cannot be made here: {NETNS_MISSING}"),
    pytest.mark.skipif(MISSING_REASON is not None and not in_ci(), reason=str(MISSING_REASON)),
    pytest.mark.timeout(90),
]


async def test_two_hosts_behind_a_front_on_sentinel_redis() -> None:
    with Lab() as lab:
        front, h1, h2, r1, r2 = (lab.add_host(name) for name in ("front", "h1", "h2", "r1", "r2"))
        lab.redis(r1)
        lab.redis(r2, replica_of=r1)
        lab.sentinel(r2, r1, quorum=1)
        lab.wait_replicated(r1, 1)
        url = lab.sentinel_url([r2], wait_replicas=1)
        backends = {h.address: lab.backend(h, url, front) for h in (h1, h2)}
        for host in (h1, h2):
            lab.wait_ready(host, backends[host.address], f"backend-{host.name}.log")
        lab.front(front, [h1, h2])
        admin = f"{front.address}:{ADMIN_PORT}"
        wait_pool(admin, {h1.address, h2.address}, 10)

        callers = [Caller(i, hotkey().ss58_address) for i in range(4)]
        try:
            calls = await load(callers, front.address, 1.5, http_every=3)
            assert calls and all(c.accepted for c in calls), Counter(c.status for c in calls)
            served = Counter((c.answer["host"], c.protocol) for c in calls)
            assert {host for host, _ in served} == {"h1", "h2"}, served  # both hosts, ...
            assert {protocol for _, protocol in served} == {"grpc", "http"}, served  # ... both protocols
            # The backends saw the caller's own address, passed on by the front.
            assert {c.answer["caller_ip"] for c in calls} == {lab.gateway}

            # Every accepted request, sent again to the front and to each host: none accepted.
            assert await replay(callers, calls, [front.address, h1.address, h2.address]) == 0

            # A forged x-forwarded-for, direct to a host or through the front, changes nothing.
            caller = callers[0]
            for target, protocol in ((h1.address, "grpc"), (h2.address, "http"), (front.address, "grpc")):
                body, headers = caller.sign(target, 7, protocol)
                forged = [*headers, ("x-forwarded-for", f"203.0.113.9, {front.address}")]
                status, answer = await caller.send(target, protocol, body, forged)
                assert status in ("OK", "200") and answer["caller_ip"] == lab.gateway, (target, status, answer)

            # A drained host (SIGTERM) leaves the pool before it stops: no call fails.
            running = asyncio.ensure_future(load(callers, front.address, 4.0))
            await asyncio.sleep(0.5)
            backends[h2.address].send_signal(signal.SIGTERM)
            during = await running
            assert during and all(c.accepted for c in during), Counter(c.status for c in during)
            assert backends[h2.address].wait(10) == 0
            assert {c.answer["host"] for c in during if c.started > during[0].started + 3.5} == {"h1"}
        finally:
            for caller in callers:
                await caller.close()
