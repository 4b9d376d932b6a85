"""Track records in the node shell: a seller serves its chain, a buyer fetches and verifies it.

The checks are in :mod:`p2pnode.trackrecord`, the view built from them in
:mod:`p2pnode.reputation`; this mixin of :class:`p2pnode.node.Node` does their I/O.  Before it
ranks, a buyer refreshes the records of at most :data:`MAX_RECORD_FETCHES` candidate sellers
(those checked longest ago, none more often than every :data:`RECORD_REFRESH_S`), in parallel;
each fetch continues from where the last verified page ended, so after the first look a
refresh is one small page.  A bad page penalises its seller (counted as
``record_rejected_<reason>``).
"""

from __future__ import annotations

import asyncio
import os

from ledger import seal
from p2pnode.negotiation import (
    MAX_PEER_MESSAGE_BYTES, MAX_RECORD_BLOCKS, Kind, PeerReply, PeerRequest, Status,
)
from p2pnode.trackrecord import RECORD_WINDOW_BLOCKS, RecordCursor, page_for, verify_page

__all__ = ["TrackRecordSide"]

RECORD_PAGE_BYTES = MAX_PEER_MESSAGE_BYTES - 1536   # room for the reply's own fields
MAX_RECORD_FETCHES = 4     # sellers whose records one buy step refreshes
MAX_RECORD_PAGES = 8       # pages of one fetch (a first look at a long chain goes on later)
RECORD_REFRESH_S = 3600.0  # node seconds between two looks at one seller's record


class TrackRecordSide:
    """The RECORD message: :meth:`_answer_record` (seller) and :meth:`refresh_records` (buyer)."""

    def _answer_record(self, request: PeerRequest) -> PeerReply:
        head = self.ledger.state.seq
        start = request.from_seq or max(1, head - RECORD_WINDOW_BLOCKS + 1)
        store = self.ledger.store
        chain = store.chain(self.public, start, MAX_RECORD_BLOCKS)
        page = page_for(chain, lambda seq: store.linked_to(self.public, seq),
                        RECORD_PAGE_BYTES, MAX_RECORD_BLOCKS)
        self.counters["records_served"] += 1
        return self._reply(request, Status.DONE, energy_wh=head, blocks=tuple(page))

    async def refresh_records(self, sellers: dict[bytes, str]) -> None:
        """Fetch and verify the records of some of ``sellers`` (key -> peer endpoint)."""
        now = self.clock()
        due = [s for s in sellers if not self.history.penalised(s, now)
               and now - self.history.checked_at_s(s) >= RECORD_REFRESH_S]
        due.sort(key=self.history.checked_at_s)
        await asyncio.gather(*(self._fetch_record(s, sellers[s])
                               for s in due[:MAX_RECORD_FETCHES]))

    async def _fetch_record(self, seller: bytes, endpoint: str) -> None:
        cursor = self.history.cursor(seller) or RecordCursor(seller)
        for _ in range(MAX_RECORD_PAGES):
            from_seq = cursor.head_seq + 1 if cursor.head_seq else 0
            request = seal(PeerRequest(self.public, seller, Kind.RECORD, os.urandom(16),
                                       os.urandom(16), self._now_ms(), b"", 0, 0, 0, (),
                                       self.endpoint, from_seq), self.key)
            reply, _ = await self._exchange(endpoint, request)
            if reply is None or reply.status is not Status.DONE:
                self.counters["record_unavailable"] += 1
                return
            claimed = reply.energy_wh
            start = from_seq or max(1, claimed - RECORD_WINDOW_BLOCKS + 1)
            store = self.ledger.store
            check = verify_page(seller, reply.blocks, from_seq=start, claimed_head=claimed,
                                cursor=cursor, known=lambda seq: store.get(seller, seq),
                                known_head=store.head(seller), now_s=self.clock(),
                                interval_s=self.config.interval_s)
            if check.problem is not None:
                self.counters[f"record_rejected_{check.problem}"] += 1
                self.history.penalise(seller, check.problem, self.clock())
                return
            cursor = check.cursor
            self.history.add_verified(seller, cursor, check.settlements, check.overdue,
                                      self.clock())
            self.counters["record_pages_verified"] += 1
            if cursor.head_seq >= claimed or not reply.blocks:
                return
