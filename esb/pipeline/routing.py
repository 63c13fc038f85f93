"""Routing at acceptance, and the interface of bridges to other zones.

:class:`Router` resolves recipients inside the acceptance transaction: a mailbox here
(``local``), a bridge adapter (another province, the national axis, a peer hub…), or unknown
(:mod:`esb.domain.routing` says how).  The rules are read from the database at most every
``cache_seconds`` (2 s) per process, so a rule added with ``esb routes add`` is in force on
every node within that time, and acceptance costs no extra query in between.

A bridge is a :class:`BridgeAdapter`: ``deliver(handover)`` hands one delivery over and
returns, or raises to ask for a retry (esb.pipeline.undeliverable runs the retries under
the retry policy).  Adapters are given to the wiring by name; a route to an adapter this hub
does not have is a failure like any other, retried and then reported undeliverable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from esb.domain.edxml_enums import Priority
from esb.domain.exchange import MessageType
from esb.domain.routing import Route, RoutingTable
from esb.storage import registry, routing_store
from esb.storage.database import Database

DEFAULT_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class BridgeHandover:
    """One delivery handed to a bridge: who, where, and how to read the delivered bytes.

    ``open()`` streams the bytes recipients get (verified against ``sha256`` while read);
    ``hub_document_id`` lets the other side recognise a hand-over it already took.
    """

    hub_id: str  # this hub's identifier code (ESB_HUB_ORGAN_ID)
    hub_document_id: str
    sender: str
    recipient: str
    zone: str
    adapter: str
    message_type: MessageType
    priority: Priority
    sha256: str
    size: int
    attempt: int  # 1 for the first attempt
    open: Callable[[], Iterator[bytes]]


class BridgeAdapter(Protocol):
    """A way to another zone.  ``deliver`` returns when the other side took the delivery."""

    @property
    def name(self) -> str: ...

    def deliver(self, handover: BridgeHandover) -> None:
        """Hand the delivery over; raise (any exception, with a readable message) to retry later."""
        ...


class AdapterNotConfigured(Exception):
    """A route names an adapter this hub does not have."""


class Adapters:
    """The bridge adapters of this hub, by name (empty until bridges are configured)."""

    def __init__(self, adapters: Iterable[BridgeAdapter] = ()) -> None:
        self._by_name: dict[str, BridgeAdapter] = {}
        for adapter in adapters:
            if adapter.name in self._by_name:
                raise ValueError(f"two bridge adapters are named {adapter.name}")
            self._by_name[adapter.name] = adapter

    def get(self, name: str) -> BridgeAdapter:
        adapter = self._by_name.get(name)
        if adapter is None:
            raise AdapterNotConfigured(f"adapter {name} is not configured on this hub")
        return adapter

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


class Router:
    """Resolves destination codes with the routing rules (cached) and the registry."""

    def __init__(
        self,
        database: Database,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._table: RoutingTable | None = None
        self._loaded_at = 0.0

    def table(self, session: Session | None = None) -> RoutingTable:
        """The rules as of at most ``cache_seconds`` ago (read in ``session`` when it reads them)."""
        now = self.monotonic()
        table = self._table
        if table is not None and now - self._loaded_at < self.cache_seconds:
            return table
        if session is None:
            with self.database.transaction() as own:
                table = RoutingTable(routing_store.rules(own))
        else:
            table = RoutingTable(routing_store.rules(session))
        with self._lock:
            self._table, self._loaded_at = table, now
        return table

    def invalidate(self) -> None:
        """Read the rules again at the next resolution (after this process changed them)."""
        with self._lock:
            self._table = None

    def resolve(
        self, session: Session, codes: Iterable[str], *, registered: Mapping[str, object] | None = None
    ) -> dict[str, Route]:
        """Each code's route.  ``registered`` (codes of registered agencies, e.g. the rows the
        caller already read with ``registry.agency_rows``) saves the registry query."""
        wanted = list(dict.fromkeys(codes))
        known = registered if registered is not None else registry.agency_rows(session, wanted)
        table = self.table(session)
        return {code: table.resolve(code, registered=code in known) for code in wanted}
