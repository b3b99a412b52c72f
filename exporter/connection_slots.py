"""The HTTP server's connection slots: a total cap, a per-client cap, and room kept for scrapes.

A slot is *waiting* from the moment its connection is accepted until a whole request (line,
headers, body) has arrived, and again while the connection idles between keep-alive requests;
it is *busy* while a request is answered. When a new connection would pass a cap, the oldest
waiting connection (of that client for the per-client cap, of anyone for the total) is shut
down to make room; only when every slot is busy is the new connection refused. A scraper sends
its whole request at once, so it is busy within milliseconds and never the oldest waiting
connection, while sockets that hold a slot by dripping a partial request (slowloris) or by
idling are the first to go: they cannot lock scrapes out, from one address or from many.
"""

from __future__ import annotations

import itertools
import socket
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class Slot:
    """One open connection. ``connection`` is replaced by its TLS wrapper once that exists."""

    connection: socket.socket
    client: str
    order: int
    waiting: bool = True
    released: bool = field(default=False, repr=False)


class ConnectionSlots:
    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.refused = 0
        self.evicted = 0
        self._open: list[Slot] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def admit(self, connection: socket.socket, client: str) -> Slot | None:
        """A slot for a new connection, shutting down the oldest waiting one if a cap is reached; None if all are busy."""
        with self._lock:
            mine = [slot for slot in self._open if slot.client == client]
            crowd = mine if len(mine) >= self.per_client else self._open if len(self._open) >= self.total else None
            if crowd is not None:
                waiting = [slot for slot in crowd if slot.waiting]
                if not waiting:
                    self.refused += 1
                    return None
                self._evict(min(waiting, key=lambda slot: slot.order))
            slot = Slot(connection, client, next(self._order))
            self._open.append(slot)
            return slot

    def set_waiting(self, slot: Slot, waiting: bool) -> None:
        with self._lock:
            slot.waiting = waiting

    def release(self, slot: Slot) -> None:
        with self._lock:
            if not slot.released:
                slot.released = True
                self._open.remove(slot)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def _evict(self, slot: Slot) -> None:
        """Shut the socket down (its thread's read returns at once) and free the slot now."""
        slot.released = True
        self._open.remove(slot)
        self.evicted += 1
        try:
            slot.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed, or mid TLS wrap: its handshake deadline ends it
