"""Durability: SIGKILL a ledger writer at random instants; nothing committed may be lost."""

from ledger.durability import run_crash_trials


def test_no_committed_block_is_lost_and_every_chain_verifies(tmp_path):
    report = run_crash_trials(tmp_path, trials=200, trials_per_db=10, seed=7)
    assert report.trials == 200
    assert report.committed_blocks > 200  # the writers really committed work before dying
    assert report.lost_committed == 0
    assert report.invalid_chains == 0
