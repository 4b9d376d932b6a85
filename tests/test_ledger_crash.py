"""Durability: SIGKILL a ledger writer at random instants; nothing committed may be lost."""

import pytest

from ledger.durability import run_crash_trials


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_no_committed_block_is_lost_and_every_chain_verifies(tmp_path, sync):
    """Both durability modes survive a process kill: "normal" skips the fsync of each commit,
    but a committed WAL frame is in the OS page cache, which outlives the process.  Kills come
    up to 0.25 s after the start: on a busy disk a writer's first fsync'd commits take that."""
    report = run_crash_trials(tmp_path, trials=100, trials_per_db=10, seed=7, max_delay_s=0.25,
                              sync=sync)
    assert report.trials == 100
    assert report.committed_blocks > 100  # the writers really committed work before dying
    assert report.lost_committed == 0
    assert report.invalid_chains == 0


def test_unknown_sync_mode_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="sync must be one of"):
        run_crash_trials(tmp_path, trials=1, sync="off")
