"""Slots and the queue in front of them: at most ``slots`` jobs are worked on at once,
at most ``max_waiting`` wait, in order, for one to come free.

A place is taken when a job is submitted (so the answer can show it), and handed over
to the next waiter when a slot comes free: only that waiter is woken. Where a waiter
stands is read off a sorted list of tickets, in O(log n), whenever someone asks, so a
queue move costs nothing for the others (their watchers read it at their next tick).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import count


@dataclass(eq=False)
class Place:
    """A job's claim: a slot it holds, or a ticket in the queue and the future that
    resolves when a slot is handed to it."""

    ticket: int | None = None
    turn: asyncio.Future[None] | None = field(default=None, repr=False)
    released: bool = False

    @property
    def holds_slot(self) -> bool:
        return self.turn is None or (self.turn.done() and not self.turn.cancelled())


class SlotQueue:
    def __init__(self, slots: int, max_waiting: int) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self._free = slots
        self._tickets: list[int] = []         # waiting tickets, ascending, from ``_head`` on
        self._head = 0
        self._places: dict[int, Place] = {}
        self._numbers = count(1)
        self.paused = False                   # shutting down: no queued job starts

    @property
    def waiting(self) -> int:
        return len(self._tickets) - self._head

    @property
    def full(self) -> bool:
        """Every slot busy and the queue at its limit: a new job would be refused."""
        return self._free <= 0 and self.waiting >= self.max_waiting

    def reserve(self) -> Place:
        """A free slot now, or the next place in the queue (the caller checks ``full``)."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return Place()
        ticket = next(self._numbers)
        place = Place(ticket, asyncio.get_running_loop().create_future())
        self._tickets.append(ticket)
        self._places[ticket] = place
        return place

    def position(self, place: Place) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        if place.ticket is None or place.ticket not in self._places:
            return None
        return bisect_left(self._tickets, place.ticket, self._head) - self._head + 1

    async def wait(self, place: Place) -> None:
        """Until the place holds a slot; cancelled, it leaves the queue."""
        if place.turn is None:
            return
        try:
            await place.turn
        except asyncio.CancelledError:
            self.release(place)
            raise

    def release(self, place: Place) -> None:
        """Give back the slot a place holds, or leave the queue (once; again is a no-op)."""
        if place.released:
            return
        place.released = True
        if place.holds_slot:
            self._hand_over()
            return
        assert place.turn is not None and place.ticket is not None
        place.turn.cancel()
        if self._places.pop(place.ticket, None) is not None:
            i = bisect_left(self._tickets, place.ticket, self._head)
            del self._tickets[i]

    def _hand_over(self) -> None:
        """A slot came free: the first waiter gets it, else it is free."""
        while self.waiting and not self.paused:
            ticket = self._tickets[self._head]
            self._head += 1
            place = self._places.pop(ticket)
            assert place.turn is not None
            if not place.turn.done():
                place.turn.set_result(None)
                self._compact()
                return
        self._compact()
        self._free += 1

    def _compact(self) -> None:
        """Drop the served tickets now and then (keeping it amortised O(1))."""
        if self._head > 64 and self._head * 2 > len(self._tickets):
            del self._tickets[:self._head]
            self._head = 0
