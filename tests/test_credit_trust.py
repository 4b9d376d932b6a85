"""Credit counts only from issuers the node was told to trust."""

from __future__ import annotations

import logging

import pytest

from ledger import BlockRejected, CreditVoucher, SigningKey, seal
from p2pnode.config import CreditConfig, NodeConfig
from p2pnode.errors import ConfigError
from p2pnode.meter import ProfileMeter
from p2pnode.node import Node
from tests.dhtkit import run
from tests.nodekit import ISSUER, START, key

STRANGER = SigningKey.from_seed(b"s" * 32)


def voucher(issuer: SigningKey, account: bytes, n: int = 1):
    return seal(CreditVoucher(issuer.public, account, bytes([n]) * 16, 10_000_000), issuer)


def test_the_credit_section_says_whose_vouchers_count():
    assert CreditConfig().issuer_keys() == frozenset()
    assert CreditConfig(trusted_issuers=(ISSUER.public.hex(),)).issuer_keys() == {ISSUER.public}
    assert CreditConfig(trust_any_issuer=True).issuer_keys() is None
    with pytest.raises(ConfigError, match="trust_any_issuer.*contradicts"):
        CreditConfig(trusted_issuers=(ISSUER.public.hex(),), trust_any_issuer=True)
    with pytest.raises(ConfigError, match="trust_any_issuer"):
        CreditConfig(trust_any_issuer="yes")


def test_with_no_trusted_issuer_no_voucher_counts_and_the_node_says_so(tmp_path, caplog):
    meter = ProfileMeter(START, 900, [0], [0])

    async def main():
        config = NodeConfig(ledger=tmp_path / "a.db")
        async with Node(config, meter, key=key(0)) as node:
            with pytest.raises(BlockRejected, match="issuer is not trusted"):
                node.deposit(voucher(ISSUER, node.public))
            assert node.ledger.credit_micro == 0
        trusted = NodeConfig(ledger=tmp_path / "b.db",
                             credit=CreditConfig(trusted_issuers=(ISSUER.public.hex(),)))
        async with Node(trusted, meter, key=key(1)) as node:
            node.deposit(voucher(ISSUER, node.public))
            assert node.ledger.credit_micro == 10_000_000
            path = tmp_path / "stranger.bin"
            path.write_bytes(voucher(STRANGER, node.public, 2).raw)
            with pytest.raises(ConfigError, match=r"\[credit\] vouchers: .*not in \[credit\] "
                                                  r"trusted_issuers"):
                node.deposit_file(path)
            assert node.ledger.credit_micro == 10_000_000

    with caplog.at_level(logging.WARNING, logger="p2pnode.node"):
        run(main())
    warnings = [r.getMessage() for r in caplog.records if "trusted_issuers is empty" in r.getMessage()]
    assert len(warnings) == 1          # the node without trusted issuers, not the other
