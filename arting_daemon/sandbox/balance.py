"""Each identity's credit, as ``remain_balance`` in Arting's poll answers suggests (§11).

Public clients show the field, an integer, and nothing else: what a job costs, whether
the credit refills and what Arting answers when it runs out are UNKNOWN. The sandbox
spends ``balance_per_image`` per image and ``balance_per_upscale`` per upscale at
create time and refuses a create the identity cannot pay for (INVENTED:
``100461 "insufficient balance"``).
"""

from __future__ import annotations

from . import envelope as E
from .envelope import ApiError


class Balances:
    """What is left per identity (the ``Authorization`` value; None for no header)."""

    def __init__(self) -> None:
        self._spent: dict[str | None, int] = {}

    def clear(self) -> None:
        self._spent.clear()

    def left(self, identity: str | None, start: int | None) -> int | None:
        if start is None:
            return None
        return max(0, start - self._spent.get(identity, 0))

    def charge(self, identity: str | None, amount: int, start: int | None) -> None:
        """Spend ``amount``; refuse (spending nothing) when the identity has less."""
        left = self.left(identity, start)
        if left is None:
            return
        if left < amount:
            raise ApiError(E.NO_BALANCE, "insufficient balance")
        self._spent[identity] = self._spent.get(identity, 0) + amount
