"""Leader election hand-over times: from a leader's end to its successor leading.

The leader is a separate process (this script with ``--candidate``) holding a Lease on the
harness's API emulator through the operator's client (``KubeLeaseStore``); its successor
runs in this process and has been following it. Each round uses a fresh Lease:

- ``crash``: the leader is killed (SIGKILL) a random fraction of a retry period after
  its successor saw it hold the Lease: nothing is released, the successor takes the
  Lease once it has seen the same record for ``leaseDurationSeconds``;
- ``graceful``: the leader gets SIGTERM: it ends its work and releases the Lease, and
  the successor takes it at its next try.

The time is from the signal to the successor's ``StartedLeading`` (both on the machine's
monotonic clock), for client-go's defaults (15 / 10 / 2 s) and the tests' durations
(2 / 1 / 0.2 s). Prints Markdown; ``docs/architecture.md`` ("Leader election") quotes it.

    .venv/bin/python bench/election.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
from pathlib import Path

from kubernetes.aio import client
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.support
from tests.support.emulator import EmulatedCluster
from troupe_operator.controller.handlers import api_client
from troupe_operator.controller.lease_store import KubeLeaseStore
from troupe_operator.election import Change, ElectionConfig, LeaderElector, Observer, Transition

NAMESPACE = "default"
CONFIGS = {
    "client-go defaults (15 / 10 / 2 s)": ElectionConfig(),
    "test durations (2 / 1 / 0.2 s)": ElectionConfig(
        lease_duration=2, renew_deadline=1.0, retry_period=0.2
    ),
}
LEADING = b"leading\n"


def _elector(
    url: str, lease: str, identity: str, config: ElectionConfig, observer: Observer | None = None
) -> tuple[client.ApiClient, LeaderElector]:
    api = api_client(client.Configuration(host=url), f"bench-{identity}/")
    store = KubeLeaseStore(api, config.call_timeout, NAMESPACE, lease)
    elector = LeaderElector(
        store,
        identity,
        config,
        observer=observer,
        registry=CollectorRegistry(),
    )
    return api, elector


async def candidate(url: str, lease: str, config: ElectionConfig) -> None:
    """The leader's process: lead, say so on stdout, end gracefully on SIGTERM."""
    api, elector = _elector(url, lease, "leader", config)

    async def work() -> None:
        sys.stdout.buffer.write(LEADING)
        sys.stdout.flush()
        await asyncio.Event().wait()

    running = asyncio.create_task(elector.run(work))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    try:
        await running
    except asyncio.CancelledError:
        pass
    finally:
        await api.close()


async def hand_over(url: str, lease: str, config: ElectionConfig, how: str, seed: int) -> float:
    """Seconds from the leader's end to the successor leading."""
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--candidate",
        url,
        lease,
        f"{config.lease_duration},{config.renew_deadline},{config.retry_period}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert leader.stdout is not None
    assert await leader.stdout.readline() == LEADING, "the leader never led"
    loop = asyncio.get_running_loop()
    started = loop.create_future()

    def observe(transition: Transition) -> None:
        if transition.change is Change.STARTED_LEADING and not started.done():
            started.set_result(loop.time())

    api, successor = _elector(url, lease, "successor", config, observe)
    following = asyncio.create_task(successor.run(asyncio.Event().wait))
    try:
        while successor.holder != "leader":
            await asyncio.sleep(0.01)
        await asyncio.sleep(random.Random(seed).uniform(0, config.retry_period))
        ended = loop.time()
        leader.send_signal(signal.SIGKILL if how == "crash" else signal.SIGTERM)
        took: float = await started
        await leader.wait()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await api.close()
    return took - ended


async def measure(rounds: int, quick: bool) -> None:
    print("| settings | hand-over | rounds | min s | median s | max s |")
    print("|---|---|---|---|---|---|")
    with EmulatedCluster() as cluster:
        cluster.create_namespace(NAMESPACE)
        for index, (label, config) in enumerate(CONFIGS.items()):
            runs = 1 if quick and config.lease_duration > 2 else rounds
            for how in ("crash", "graceful"):
                times = [
                    await hand_over(cluster.url, f"bench-{index}-{how}-{n}", config, how, n)
                    for n in range(runs)
                ]
                print(
                    f"| {label} | {how} | {runs} | {min(times):.2f} | "
                    f"{statistics.median(times):.2f} | {max(times):.2f} |",
                    flush=True,
                )


def main() -> None:
    if sys.argv[1:2] == ["--candidate"]:
        url, lease, durations = sys.argv[2:5]
        seconds = [float(value) for value in durations.split(",")]
        config = ElectionConfig(int(seconds[0]), seconds[1], seconds[2])
        asyncio.run(candidate(url, lease, config))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one round of the 15 s settings")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    asyncio.run(measure(args.rounds, args.quick))


if __name__ == "__main__":
    main()
