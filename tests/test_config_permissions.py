"""Warnings for config and secret files that every user on the host can read."""

import logging
import os

from mimecast_exporter.config import load_config

CONFIG_INLINE = """
accounts:
  - name: acme
    region: global
    oauth2: {client_id: id, client_secret: an-inline-client-secret}
"""
CONFIG_FILES = """
accounts:
  - name: acme
    region: global
    oauth2: {client_id: id, client_secret_file: secret}
"""


def warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING]


def test_world_readable_secret_file_warns_without_the_value(tmp_path, caplog):
    (tmp_path / "config.yml").write_text(CONFIG_FILES)
    os.chmod(tmp_path / "config.yml", 0o644)  # names a file only: fine to be public
    (tmp_path / "secret").write_text("file-client-secret\n")
    os.chmod(tmp_path / "secret", 0o644)
    with caplog.at_level(logging.WARNING, logger="mimecast_exporter.config"):
        load_config(tmp_path / "config.yml", environ={})
    found = warnings(caplog)
    assert len(found) == 1
    message = found[0].getMessage()
    assert str(tmp_path / "secret") in message and "readable by every user" in message
    assert found[0].field == "accounts[0].oauth2.client_secret_file"
    assert "file-client-secret" not in message


def test_private_files_do_not_warn(tmp_path, caplog):
    (tmp_path / "config.yml").write_text(CONFIG_INLINE)
    os.chmod(tmp_path / "config.yml", 0o600)
    (tmp_path / "secret").write_text("x")
    with caplog.at_level(logging.WARNING, logger="mimecast_exporter.config"):
        load_config(tmp_path / "config.yml", environ={})
    assert warnings(caplog) == []


def test_world_readable_config_with_inline_secret_warns(tmp_path, caplog):
    (tmp_path / "config.yml").write_text(CONFIG_INLINE)
    os.chmod(tmp_path / "config.yml", 0o604)
    with caplog.at_level(logging.WARNING, logger="mimecast_exporter.config"):
        load_config(tmp_path / "config.yml", environ={})
    found = warnings(caplog)
    assert len(found) == 1 and "holds secrets inline" in found[0].getMessage()
    assert "an-inline-client-secret" not in found[0].getMessage()


def test_world_readable_config_with_env_secret_does_not_warn(tmp_path, caplog):
    (tmp_path / "config.yml").write_text(
        CONFIG_INLINE.replace("an-inline-client-secret", "'${CLIENT_SECRET}'")
    )
    os.chmod(tmp_path / "config.yml", 0o644)
    with caplog.at_level(logging.WARNING, logger="mimecast_exporter.config"):
        load_config(tmp_path / "config.yml", environ={"CLIENT_SECRET": "from-the-env"})
    assert warnings(caplog) == []
