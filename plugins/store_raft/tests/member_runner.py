"""Host one raft store member in its own process, for the fault test and the benchmark.

    python member_runner.py --options JSON --listen 127.0.0.1:PORT --status FILE

Opens a :class:`~pilothouse_store_raft.RaftStore` with the given options, serves it over
the gRPC Store service (:func:`pilothouse.api.store_server.serve_store`; clients use
:class:`pilothouse.api.store_client.RemoteStore`), prints ``READY <grpc address>`` and then
rewrites FILE every 20 ms with the member's raft status as JSON (``is_leader``, ``term``,
``revision``, ...), which is how a test finds the leader to kill. Runs until SIGTERM or
SIGINT; SIGKILL is what the fault test sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal

from pilothouse.api.store_server import serve_store
from pilothouse.testing import build_driver


async def _main(args) -> None:
    store = build_driver("store", "raft", json.loads(args.options))
    await store.open()
    server = await serve_store(store, args.listen)
    print(f"READY {server.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = args.status + ".tmp"
    try:
        while not stop.is_set():
            member = store.member
            status = member.status() if member is not None else {}
            status["pid"] = os.getpid()
            status["grpc"] = server.address
            with open(tmp, "w") as f:
                json.dump(status, f)
            os.replace(tmp, args.status)
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except asyncio.TimeoutError:
                pass
    finally:
        await server.stop(1.0)
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", required=True, help="RaftStore options as JSON")
    parser.add_argument("--listen", required=True, help="gRPC host:port")
    parser.add_argument("--status", required=True, help="status file to keep updated")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
