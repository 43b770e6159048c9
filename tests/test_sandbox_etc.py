"""The sandbox's /etc copy: what others may read, symbolic links as links, a size limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentyard.sandbox import etc


def _host(root: Path) -> Path:
    src = root / "host-etc"
    (src / "ssl" / "certs").mkdir(parents=True)
    (src / "ssl" / "certs" / "bundle.crt").write_text("CERTS")
    os.symlink("/usr/share/ca/one.crt", src / "ssl" / "certs" / "one.pem")
    private = src / "ssl" / "private"
    private.mkdir()
    (private / "host.key").write_text("SECRET KEY")
    private.chmod(0o710)
    (src / "gitconfig").write_text("[core]\n")
    (src / "hosts").write_text("127.0.0.1 localhost\n")
    (src / "hosts").chmod(0o600)  # not for others: left out
    (src / "shadow").write_text("root:$6$hash")  # not on the list
    os.symlink("/usr/share/zoneinfo/UTC", src / "localtime")
    run = root / "run"
    run.mkdir()
    (run / "stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    os.symlink(run / "stub-resolv.conf", src / "resolv.conf")  # out of the sandbox's sight
    return src


def test_copies_the_allowed_entries_others_may_read(tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    etc.make_etc(dest, _host(tmp_path))
    assert (dest / "ssl" / "certs" / "bundle.crt").read_text() == "CERTS"
    assert os.readlink(dest / "ssl" / "certs" / "one.pem") == "/usr/share/ca/one.crt"
    assert os.readlink(dest / "localtime") == "/usr/share/zoneinfo/UTC"
    assert (dest / "gitconfig").read_text() == "[core]\n"
    resolv = dest / "resolv.conf"
    assert not resolv.is_symlink() and resolv.read_text() == "nameserver 127.0.0.53\n"
    assert not (dest / "ssl" / "private").exists()
    assert not (dest / "hosts").exists()
    assert not (dest / "shadow").exists()
    assert (dest / "passwd").read_text() == etc.PASSWD
    assert (dest / "group").read_text() == etc.GROUP
    assert "agent:x:1000:1000:" in etc.PASSWD


def test_stops_copying_at_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _host(tmp_path)
    (src / "services").write_text("x" * 100)
    monkeypatch.setattr(etc, "MAX_BYTES", 50)
    dest = tmp_path / "etc"
    etc.make_etc(dest, src)
    assert not (dest / "services").exists()
    assert (dest / "gitconfig").exists()  # what still fits is copied
    assert (dest / "passwd").exists()
