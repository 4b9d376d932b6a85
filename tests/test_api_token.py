"""The local API's bearer token is compared in constant time (hmac.compare_digest)."""

from __future__ import annotations

import hmac

from p2pnode import api

TOKEN = b"s3cret-token-of-enough-length-000"


def test_the_bearer_token_is_compared_with_compare_digest_only(monkeypatch):
    calls, compare = [], hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(api.hmac, "compare_digest", recording)
    assert api._bearer_ok("Bearer " + TOKEN.decode(), TOKEN)
    assert not api._bearer_ok("Bearer " + TOKEN.decode()[:-1] + "1", TOKEN)
    assert not api._bearer_ok("bearer x", TOKEN)
    assert calls == [(TOKEN, TOKEN), (TOKEN[:-1] + b"1", TOKEN), (b"x", TOKEN)]
    # no early exit on the scheme alone or an empty header: those never reach a comparison
    assert not api._bearer_ok("Basic " + TOKEN.decode(), TOKEN)
    assert not api._bearer_ok(None, TOKEN) and len(calls) == 3
