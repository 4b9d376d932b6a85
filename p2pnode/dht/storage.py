"""Validated multi-record storage for the DHT: many signed offers per key, each with its expiry.

A pure core behind kademlia's :class:`~kademlia.storage.IStorage` interface: no sockets and no
wall clock -- the time comes from the injected ``clock`` (unix seconds).

Rules of :meth:`OfferStorage.offer` (each refusal is a :class:`~p2pnode.offers.Drop`, counted):

* the record passes :func:`~p2pnode.offers.check_record` (size, strict encoding, signature,
  not expired, expiry not too far ahead) and belongs to the key it is stored under;
* a key holds at most one version of each (seller, offer_id): a store replaces the held
  version only when it carries a higher ``seq``.  The seller is the signer and part of the
  offer's identity, so nobody can replace another seller's record (kademlia issue #107);
* the record is one this node holds for others (:mod:`p2pnode.dht.admission`: its feeder, an
  interval within the horizon, at most a few offers of one seller per key);
* at most :data:`MAX_RECORDS_PER_KEY` offers per key, :data:`MAX_RECORDS_PER_SELLER` per
  seller on this node and :data:`MAX_KEYS` keys.  Beyond the key caps a new offer takes the
  place of a held offer whose seller has less standing
  (:class:`~p2pnode.dht.admission.SellerStanding`), else it is refused: first come, first kept
  among equals, so a flood of fresh keys can fill only what sellers with a history leave free
  and never pushes them out.  Newcomers (sellers without standing) share a bounded part of
  the storage: :data:`MAX_NEWCOMER_RECORDS_PER_KEY` per key and :data:`MAX_NEWCOMER_RECORDS`
  in all, so fresh keys alone never fill a key or the node.  (Standing is what *this* node
  saw: in a large swarm, where a node holds few of the keys, most honest sellers are
  newcomers to it -- the quotas are sized for that, not for keeping fakes out of lookups.)
  Within the newcomers' room, places are shared by network *source* (the sender that stored
  the record, see :class:`~p2pnode.dht.admission.SourceShares`): when it is full, a newcomer
  record takes the place of the latest record of the source holding the most, if that source
  holds at least two more than the newcomer's (:func:`~p2pnode.dht.admission.fair_victim`),
  so a flood of fresh keys from one machine cannot keep honest sellers out of a cold swarm;
  and a network source holds at most :data:`MAX_NEWCOMER_RECORDS_PER_SOURCE_PER_KEY` newcomer
  records under one key (this node's own offers, ``LOCAL_SOURCE``, only a seller's caps), so
  its fresh keys cannot bury a key's honest offers in a buyer's lookup either.
  An honest seller's republish of an offer it already has here is never refused by a cap;
* a record vanishes at its own absolute ``expires_at_s``; storing it again does not extend its
  life (kademlia issue #104).

Records of a key are read in pages ordered by (seller, offer_id) so a reply fits a datagram.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Callable, Hashable, Iterator
from typing import NamedTuple

from kademlia.storage import IStorage

from ledger import Sealed
from p2pnode.dht.admission import (
    LOCAL_SOURCE, MAX_RECORDS_PER_SELLER_PER_KEY, AdmissionPolicy, SellerStanding, SourceShares,
    admission_problem, fair_victim,
)
from p2pnode.offers import Drop, OfferRecord, RecordCache, record_keys

__all__ = [
    "MAX_KEYS", "MAX_RECORDS_PER_KEY", "MAX_RECORDS_PER_SELLER", "OfferStorage", "Page",
    "PAGE_BUDGET_BYTES",
]

MAX_RECORDS_PER_KEY = 256
MAX_RECORDS_PER_SELLER = 160   # one offer per 15-min interval over the 36 h horizon, and more
MAX_KEYS = 4096
MAX_NEWCOMER_RECORDS_PER_KEY = 192   # records per key of sellers without standing here ...
MAX_NEWCOMER_RECORDS = 3072          # ... and in all: the rest stays for sellers with standing
MAX_NEWCOMER_RECORDS_PER_SOURCE_PER_KEY = 2 * MAX_RECORDS_PER_SELLER_PER_KEY
"""Newcomer records one network source stores under one key: what one seller may, for each
of the nodes one address may run (``DHTSettings.max_contacts_per_host``: 2)."""
PAGE_BUDGET_BYTES = 6500   # record bytes per find_value reply, so the datagram stays < 8 KB


class Page(NamedTuple):
    records: tuple[bytes, ...]
    more: bytes | None  # cursor for the next page: the entry id of the last record returned


class _Held(NamedTuple):
    sealed: Sealed[OfferRecord]
    stored_at_s: float


class OfferStorage(IStorage):
    """Offers held by one node, by key, with caps, sequence rules and absolute expiry."""

    def __init__(self, clock: Callable[[], float], cache: RecordCache | None = None,
                 policy: AdmissionPolicy | None = None):
        self.clock = clock
        self.cache = cache or RecordCache()
        self.policy = policy or AdmissionPolicy()
        self.standing = SellerStanding()
        self.evicted = 0   # held offers that gave their place to a seller with more standing
        self.evicted_for_share = 0   # ... or to a source holding fewer newcomer records
        self.dropped: collections.Counter[str] = collections.Counter()
        self._keys: dict[bytes, dict[bytes, _Held]] = {}
        self._per_seller: collections.Counter[bytes] = collections.Counter()
        self._expiry: list[tuple[int, bytes, bytes, int]] = []  # (expires, key, entry, seq)
        self.newcomers = SourceShares()   # records of sellers without standing, by source

    # -- writing ---------------------------------------------------------------------------
    def offer(self, key: bytes, raw: bytes, source: Hashable = LOCAL_SOURCE) -> Drop | None:
        """Store ``raw`` under ``key`` if it passes every rule; return why not otherwise.

        ``source`` is the network source that stored it (see the module doc; the protocol
        names it, this node's own offers are :data:`~p2pnode.dht.admission.LOCAL_SOURCE`)."""
        now_s = self.clock()
        self._cull(now_s)
        problem = self._judge(key, raw, now_s, source)
        if isinstance(problem, Drop):
            self.dropped[problem] += 1
            return problem
        if problem is not None:
            self._put(key, problem, now_s, source)
        return None

    def _judge(self, key: bytes, raw: bytes, now_s: float, source: Hashable
               ) -> Sealed[OfferRecord] | Drop | None:
        """The record to store, None when it is already held, or the Drop reason."""
        sealed = self.cache.check(raw, now_s)
        if isinstance(sealed, Drop):
            return sealed
        record = sealed.message
        if key not in record_keys(record):
            return Drop.WRONG_KEY
        refused = admission_problem(record, self.policy, now_s)
        if refused is not None:
            return refused
        held = self._keys.get(key, {}).get(record.entry_id)
        if held is not None:
            if held.sealed.raw == raw:
                return None
            if held.sealed.message.seq == record.seq:
                return Drop.SEQ_CONFLICT
            return Drop.STALE_SEQ if held.sealed.message.seq > record.seq else sealed
        return self._cap_problem(key, record, source) or sealed

    def _cap_problem(self, key: bytes, record: OfferRecord, source: Hashable) -> Drop | None:
        if self._per_seller[record.seller] >= MAX_RECORDS_PER_SELLER:
            return Drop.SELLER_FULL
        entries = self._keys.get(key, {})
        if sum(1 for e in entries if e[:32] == record.seller) >= MAX_RECORDS_PER_SELLER_PER_KEY:
            return Drop.SELLER_KEY_FULL
        if self.standing.of(record.seller) == 0:
            return self._newcomer_room(key, len(entries), source)
        if key not in self._keys and len(self._keys) >= MAX_KEYS:
            return self._make_room(record.seller, None, Drop.STORAGE_FULL)
        if len(entries) >= MAX_RECORDS_PER_KEY:
            return self._make_room(record.seller, key, Drop.KEY_FULL)
        return None

    def _newcomer_room(self, key: bytes, held: int, source: Hashable) -> Drop | None:
        """Room for one more newcomer record of ``source`` under ``key`` (a key ``held``
        records hold): free, or the place of a record of a source holding more
        (:func:`~p2pnode.dht.admission.fair_victim`); else why not."""
        if key not in self._keys and len(self._keys) >= MAX_KEYS:
            return Drop.STORAGE_FULL     # newcomers alone never fill the keys: no scan
        if source != LOCAL_SOURCE and (   # this node's own offers: one seller's caps bind
                self.newcomers.share(source, key) >= MAX_NEWCOMER_RECORDS_PER_SOURCE_PER_KEY):
            return Drop.SOURCE_KEY_FULL
        in_key = self.newcomers.in_key(key)
        if held >= MAX_RECORDS_PER_KEY or in_key >= MAX_NEWCOMER_RECORDS_PER_KEY:
            victim = fair_victim(self.newcomers, source, key)
            full = Drop.KEY_FULL if held >= MAX_RECORDS_PER_KEY else Drop.NEWCOMER_QUOTA
        elif len(self.newcomers) >= MAX_NEWCOMER_RECORDS:
            victim, full = fair_victim(self.newcomers, source), Drop.NEWCOMER_QUOTA
        else:
            return None
        if victim is None:
            return full
        self._remove(*victim)
        self.evicted += 1
        self.evicted_for_share += 1
        return None

    def _make_room(self, seller: bytes, key: bytes | None, full: Drop) -> Drop | None:
        """Evict the held offer with the least standing (in ``key``, or anywhere) when its
        seller has less standing than ``seller``; else the cap's Drop."""
        if self.standing.of(seller) == 0:
            return full   # a fresh key never pushes anybody out (and costs no scan)
        keys = (key,) if key is not None else tuple(self._keys)
        weakest = None
        for k in keys:
            for entry, held in self._keys[k].items():
                rank = self.standing.of(held.sealed.message.seller)
                if weakest is None or rank < weakest[0]:
                    weakest = (rank, k, entry)
        if weakest is None or not weakest[0] < self.standing.of(seller):
            return full
        self._remove(weakest[1], weakest[2])
        self.evicted += 1
        return None

    def _put(self, key: bytes, sealed: Sealed[OfferRecord], now_s: float,
             source: Hashable) -> None:
        record = sealed.message
        entries = self._keys.setdefault(key, {})
        if record.entry_id not in entries:
            self._per_seller[record.seller] += 1
            if self.standing.of(record.seller) == 0:
                self.newcomers.add(key, record.entry_id, source)
        elif (key, record.entry_id) in self.newcomers:   # a newer version: charged to its source
            self.newcomers.add(key, record.entry_id, source)
        entries[record.entry_id] = _Held(sealed, now_s)
        heapq.heappush(self._expiry, (record.expires_at_s, key, record.entry_id, record.seq))
        self.standing.observe(record.seller, now_s)

    def _cull(self, now_s: float) -> None:
        while self._expiry and self._expiry[0][0] <= now_s:
            _, key, entry, seq = heapq.heappop(self._expiry)
            held = self._keys.get(key, {}).get(entry)
            if held is None or held.sealed.message.seq != seq:
                continue  # replaced or evicted; a newer version has its own expiry entry
            self._remove(key, entry)

    def _remove(self, key: bytes, entry: bytes) -> None:
        entries = self._keys[key]
        seller = entries.pop(entry).sealed.message.seller
        self.newcomers.discard(key, entry)
        self._per_seller[seller] -= 1
        if not self._per_seller[seller]:
            del self._per_seller[seller]
        if not entries:
            del self._keys[key]

    # -- reading ---------------------------------------------------------------------------
    def records(self, key: bytes) -> tuple[bytes, ...]:
        """Every live record of ``key``, ordered by (seller, offer_id)."""
        self._cull(self.clock())
        entries = self._keys.get(key, {})
        return tuple(entries[e].sealed.raw for e in sorted(entries))

    def page(self, key: bytes, after: bytes | None, budget_bytes: int = PAGE_BUDGET_BYTES,
             max_records: int = MAX_RECORDS_PER_KEY) -> Page:
        """Records of ``key`` whose entry id is above ``after``, up to ``budget_bytes``."""
        self._cull(self.clock())
        entries = self._keys.get(key, {})
        out: list[bytes] = []
        used, last = 0, None
        for entry in sorted(e for e in entries if after is None or e > after):
            raw = entries[entry].sealed.raw
            if out and (used + len(raw) > budget_bytes or len(out) == max_records):
                return Page(tuple(out), last)
            out.append(raw)
            used, last = used + len(raw), entry
        return Page(tuple(out), None)

    def keys(self) -> list[bytes]:
        self._cull(self.clock())
        return list(self._keys)

    def __bool__(self) -> bool:
        return True  # an empty storage is still a storage (kademlia tests `storage or default`)

    def __len__(self) -> int:
        """Number of records held (all keys)."""
        self._cull(self.clock())
        return sum(len(entries) for entries in self._keys.values())

    # -- kademlia's IStorage ---------------------------------------------------------------
    def __setitem__(self, key: bytes, value: bytes) -> None:
        """Store one sealed record; a refused record is counted in ``dropped``, not raised."""
        self.offer(key, value)

    def __getitem__(self, key: bytes) -> tuple[bytes, ...]:
        records = self.records(key)
        if not records:
            raise KeyError(key)
        return records

    def get(self, key: bytes, default=None):
        return self.records(key) or default

    def __iter__(self) -> Iterator[tuple[bytes, tuple[bytes, ...]]]:
        """(key, records) for every key held."""
        return iter([(key, self.records(key)) for key in self.keys()])

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, bytes]]:
        """(key, record) stored more than ``seconds_old`` ago.

        Kademlia's server republishes these; :class:`~p2pnode.dht.server.OfferServer` does not
        (only a seller republishes its own offers), so this exists for the interface only.
        """
        now_s = self.clock()
        self._cull(now_s)
        return [(key, held.sealed.raw) for key, entries in self._keys.items()
                for held in entries.values() if held.stored_at_s <= now_s - seconds_old]
