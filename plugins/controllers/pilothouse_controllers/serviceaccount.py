"""The ServiceAccount controller: every active namespace has the ``default`` ServiceAccount
(and any other names in ``serviceAccounts``); a deleted one is recreated."""

from __future__ import annotations

import dataclasses

from pilothouse.controllers import QueueController
from pilothouse.model import errors

from pilothouse_controllers import common


class ServiceAccountController(QueueController):
    """Entry point ``serviceaccount``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 2
        serviceAccounts: list[str] = dataclasses.field(default_factory=lambda: ["default"])

    def __init__(self, options: "ServiceAccountController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers

    def setup(self) -> None:
        self.namespaces = self.watch("v1", "Namespace")
        wanted = set(self.options.serviceAccounts)
        self.accounts = self.watch(
            "v1", "ServiceAccount",
            keys=lambda sa: [common.meta(sa).get("namespace")]
            if common.meta(sa).get("name") in wanted else [])
        self.sa_api = self.client.resource("v1", "ServiceAccount")

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or common.deleting(ns) or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        for name in self.options.serviceAccounts:
            if self.accounts.get(f"{key}/{name}") is not None:
                continue
            try:
                await self.sa_api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": name, "namespace": key}})
            except errors.AlreadyExists:
                pass
        return None
