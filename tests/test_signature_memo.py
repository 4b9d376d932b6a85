"""The memo of valid signatures (ledger.keys): repeats are cheap, forgeries never pass."""

import pytest

from ledger import keys
from ledger.keys import SigningKey, forget_signatures, is_valid_signature


@pytest.fixture
def checks(monkeypatch):
    """Count the real Ed25519 checks made under is_valid_signature."""
    made = []
    real = keys._public_key

    def counted(public):
        made.append(public)
        return real(public)

    forget_signatures()
    monkeypatch.setattr(keys, "_public_key", counted)
    yield made
    forget_signatures()


def test_a_valid_signature_is_checked_once(checks):
    key = SigningKey.from_seed(b"\x01" * 32)
    data = b"offer for 12:00, 500 Wh"
    signature = key.sign(data)
    assert is_valid_signature(key.public, signature, data)
    assert is_valid_signature(key.public, signature, data)
    assert len(checks) == 1


def test_forgeries_are_checked_every_time_and_never_pass(checks):
    key, other = SigningKey.from_seed(b"\x01" * 32), SigningKey.from_seed(b"\x02" * 32)
    data = b"offer for 12:00, 500 Wh"
    signature = key.sign(data)
    assert is_valid_signature(key.public, signature, data)
    for _ in range(2):   # the remembered triple does not vouch for any other
        assert not is_valid_signature(key.public, signature, data + b"0")
        assert not is_valid_signature(other.public, signature, data)
        assert not is_valid_signature(key.public, signature[:-1] + b"\x00", data)
    assert len(checks) == 1 + 6


def test_the_memo_is_bounded(checks, monkeypatch):
    monkeypatch.setattr(keys, "_remembered", keys._Remembered(2))
    key = SigningKey.from_seed(b"\x03" * 32)
    signed = [(key.sign(bytes([i])), bytes([i])) for i in range(3)]
    for signature, data in signed:
        assert is_valid_signature(key.public, signature, data)
    assert len(keys._remembered._digests) == 2
    assert is_valid_signature(key.public, *signed[0])   # the oldest was forgotten: checked again
    assert is_valid_signature(key.public, *signed[2])   # still remembered
    assert len(checks) == 4
