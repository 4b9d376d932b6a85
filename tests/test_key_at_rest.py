"""Key at rest (encrypted PKCS#8 node keys) and bounded, checked reads of every file a node reads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from p2pnode.config import load_config
from p2pnode.errors import ConfigError, FileLimitError, IdentityError
from p2pnode.files import KEY_FILE_MAX_BYTES, read_bounded, read_private
from p2pnode.identity import create_key_file, load_key_file, load_node_key, passphrase_from
from p2pnode.meter import CsvReplayMeter

PASS = b"correct horse battery staple"


def _private(path, data: bytes):
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_encrypted_key_round_trip_and_wrong_passphrase(tmp_path):
    path = tmp_path / "node.key"
    key = create_key_file(path, passphrase=PASS)
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert load_key_file(path, PASS).public == key.public
    with pytest.raises(IdentityError, match="wrong passphrase"):
        load_key_file(path, b"not it")
    with pytest.raises(IdentityError, match="encrypted and no passphrase was given"):
        load_key_file(path)
    plain = tmp_path / "plain.key"
    create_key_file(plain)
    with pytest.raises(IdentityError, match="not encrypted"):
        load_key_file(plain, PASS)


def test_passphrase_from_file_or_environment(tmp_path, monkeypatch):
    secret = _private(tmp_path / "pass", PASS + b"\n")
    assert passphrase_from(secret) == PASS
    monkeypatch.setenv("NODE_PASS", PASS.decode())
    assert passphrase_from(env="NODE_PASS") == PASS
    assert passphrase_from() is None
    with pytest.raises(IdentityError, match="NODE_PASS_MISSING .*is not set"):
        passphrase_from(env="NODE_PASS_MISSING")
    with pytest.raises(IdentityError, match="not both"):
        passphrase_from(secret, "NODE_PASS")
    empty = _private(tmp_path / "empty", b"\n")
    with pytest.raises(IdentityError, match="passphrase is empty"):
        passphrase_from(empty)
    secret.chmod(0o644)
    with pytest.raises(IdentityError, match="accessible by others"):
        passphrase_from(secret)


def _config(tmp_path, extra: str) -> str:
    (tmp_path / "meter.csv").write_text("interval_start_s,generation_wh,consumption_wh\n")
    path = tmp_path / "node.toml"
    path.write_text(f'key_file = "node.key"\n{extra}\n[meter]\npath = "meter.csv"\n')
    return load_config(path)


def test_node_config_loads_an_encrypted_key(tmp_path, monkeypatch):
    key = create_key_file(tmp_path / "node.key", passphrase=PASS)
    _private(tmp_path / "node.pass", PASS)
    config = _config(tmp_path, 'key_passphrase_file = "node.pass"')
    assert load_node_key(config).public == key.public
    monkeypatch.setenv("P2P_TEST_PASS", "wrong")
    config = _config(tmp_path, 'key_passphrase_env = "P2P_TEST_PASS"')
    with pytest.raises(IdentityError, match="node.key is not usable: wrong passphrase"):
        load_node_key(config)
    with pytest.raises(ConfigError, match='key_passphrase_env = "P2P_TEST_PASS": give .* not both'):
        _config(tmp_path, 'key_passphrase_file = "node.pass"\nkey_passphrase_env = "P2P_TEST_PASS"')


def test_cli_keygen_and_id_with_an_encrypted_key(tmp_path):
    _private(tmp_path / "pass", PASS)
    env = dict(os.environ, P2P_TEST_PASS=PASS.decode())
    run = [sys.executable, "-m", "p2pnode.cli"]
    made = subprocess.run([*run, "keygen", "--key", str(tmp_path / "k"), "--passphrase-file",
                           str(tmp_path / "pass")], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    assert "encrypted" in made.stdout
    shown = subprocess.run([*run, "id", "--key", str(tmp_path / "k"), "--passphrase-env",
                            "P2P_TEST_PASS"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("public_key")[1].split()[0] in made.stdout
    wrong = subprocess.run([*run, "id", "--key", str(tmp_path / "k")], capture_output=True,
                           text=True, env=env)
    assert wrong.returncode != 0 and "no passphrase was given" in wrong.stderr


def test_key_file_pointing_at_dev_zero_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "node.key"
    link.symlink_to("/dev/zero")
    with pytest.raises(IdentityError, match="not a regular file"):
        load_key_file(link)


def test_oversize_files_are_refused(tmp_path):
    big = _private(tmp_path / "big.key", b"x" * (KEY_FILE_MAX_BYTES + 1))
    with pytest.raises(IdentityError, match="at most"):
        load_key_file(big)
    csv = tmp_path / "meter.csv"
    csv.write_bytes(b"interval_start_s,generation_wh,consumption_wh\n")
    assert read_bounded(csv, 100, "meter CSV").startswith(b"interval")
    with pytest.raises(FileLimitError, match="meter CSV .* at most 10 are read"):
        read_bounded(csv, 10, "meter CSV")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        CsvReplayMeter(fifo, 900)
    config = tmp_path / "node.toml"
    config.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(config)


def test_a_key_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "node.key"
    create_key_file(path)
    if os.geteuid() == 0:        # as root, as in the attack: a real file of another user
        os.chown(path, 65534, 65534)
    else:                        # elsewhere: the node runs as another uid than the owner
        owner = path.stat().st_uid
        monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(IdentityError, match=r"owned by uid \d+, not by the user running the node"):
        load_key_file(path)
    with pytest.raises(FileLimitError, match="owned by uid"):
        read_private(path, 1024, "key file")
