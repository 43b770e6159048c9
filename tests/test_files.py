"""Workspace file access: list, read, write, delete, archive, and that no path given by a
client reaches outside the workspace or into .git."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from agentyard.core.errors import InvalidInput, NotFound, PayloadTooLarge
from agentyard.workspace import files


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace holding a secret."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("top secret")
    return path


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """A workspace with text, binary, nested files, .git, and symlinks in and out."""
    ws = tmp_path / "ws"
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / ".git" / "hooks").mkdir(parents=True)
    (ws / ".git" / "config").write_text("[core]\n")
    (ws / "README.md").write_text("# hello\n")
    (ws / "src" / "main.py").write_text("print('hi')\n")
    (ws / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (ws / "blob.bin").write_bytes(b"\x00\x01\xff")
    (ws / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (ws / "escape").symlink_to(outside)
    (ws / "secretlink").symlink_to(outside / "secret.txt")
    (ws / "etclink").symlink_to("/etc")
    (ws / "readme-link").symlink_to("README.md")
    (ws / "srclink").symlink_to("src")
    (ws / "gitlink").symlink_to(".git")
    (ws / "dangling").symlink_to("nowhere")
    return ws


def _paths(entries: list[dict[str, object]]) -> dict[str, object]:
    return {str(e["path"]): e["type"] for e in entries}


def test_list_top_level_and_recursive(root: Path) -> None:
    """Listing shows files and directories with sizes, never .git nor links leading out of
    the root; recursive listing descends but not through symlinked directories."""
    top = files.list_files(root)
    by_path = {e["path"]: e for e in top}
    assert by_path["README.md"] == {
        "name": "README.md",
        "path": "README.md",
        "type": "file",
        "size": 8,
    }
    assert by_path["src"]["type"] == "directory"
    assert by_path["readme-link"]["type"] == "file"  # a link inside is shown as its target
    assert by_path["srclink"]["type"] == "directory"
    for hidden in (".git", "escape", "secretlink", "etclink", "gitlink", "dangling"):
        assert hidden not in by_path

    deep = _paths(files.list_files(root, "", recursive=True))
    assert deep["src/pkg/mod.py"] == "file" and deep["src/pkg"] == "directory"
    assert not any(p.startswith((".git/", "srclink/", "escape/")) for p in deep)

    assert _paths(files.list_files(root, "src/pkg")) == {"src/pkg/mod.py": "file"}
    assert _paths(files.list_files(root, "./src//pkg/")) == {"src/pkg/mod.py": "file"}


def test_list_errors(root: Path) -> None:
    """Listing a missing directory is NotFound; a file, or a directory outside, InvalidInput."""
    with pytest.raises(NotFound):
        files.list_files(root, "nope")
    with pytest.raises(InvalidInput, match="not a directory"):
        files.list_files(root, "README.md")
    for bad in ("escape", "etclink", "..", "/etc", "../outside", "a\x00b", ".git", "gitlink"):
        with pytest.raises(InvalidInput):
            files.list_files(root, bad)


def test_read_text_binary_and_links(root: Path) -> None:
    """UTF-8 files are returned as text, others in base64, with a MIME type and size; a
    link to a file inside the root is read through."""
    assert files.read_file(root, "src/main.py") == {
        "path": "src/main.py",
        "content": "print('hi')\n",
        "encoding": "text",
        "mimeType": "text/x-python",
        "size": 12,
    }
    blob = files.read_file(root, "blob.bin")
    assert blob["encoding"] == "base64" and base64.b64decode(blob["content"]) == b"\x00\x01\xff"
    assert blob["mimeType"] == "application/octet-stream" and blob["size"] == 3
    assert files.read_file(root, "latin1.txt")["encoding"] == "base64"
    linked = files.read_file(root, "readme-link")
    assert linked["content"] == "# hello\n" and linked["path"] == "readme-link"


def test_read_errors(root: Path) -> None:
    """Reading a missing file is NotFound; a directory, a FIFO or a too-large file is
    refused."""
    with pytest.raises(NotFound):
        files.read_file(root, "missing.txt")
    with pytest.raises(InvalidInput, match="directory"):
        files.read_file(root, "src")
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidInput, match="not a regular file"):
        files.read_file(root, "pipe")  # and does not hang
    with pytest.raises(PayloadTooLarge):
        files.read_file(root, "README.md", max_bytes=3)


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "src/../../outside/secret.txt",
        "/etc/passwd",
        "\\etc\\passwd",
        "escape/secret.txt",
        "secretlink",
        "etclink/passwd",
        "README.md\x00.txt",
        ".git/config",
        "gitlink/config",
        "src/../.git/config",
    ],
)
def test_traversal_is_refused_everywhere(root: Path, outside: Path, path: str) -> None:
    """Escapes (.., absolute paths, symlinks out), NUL bytes and .git are InvalidInput for
    read, write and delete, and nothing outside (or in .git) changes. (Deleting a link that
    leads out removes only the link: see test_delete_files_dirs_and_links.)"""
    with pytest.raises(InvalidInput):
        files.read_file(root, path)
    with pytest.raises(InvalidInput):
        files.write_file(root, path, b"pwned")
    if path != "secretlink":
        with pytest.raises(InvalidInput):
            files.delete_path(root, path)
    assert (outside / "secret.txt").read_text() == "top secret"
    assert (root / ".git" / "config").read_text() == "[core]\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_write_creates_parents_and_replaces(root: Path) -> None:
    """Writing creates missing directories, replaces existing content, and reports the size."""
    assert files.write_file(root, "docs/new/readme.md", b"hi") == {
        "success": True,
        "path": "docs/new/readme.md",
        "size": 2,
    }
    assert (root / "docs" / "new" / "readme.md").read_bytes() == b"hi"
    files.write_file(root, "README.md", b"short")
    assert (root / "README.md").read_bytes() == b"short"
    # Through a link that stays inside, the target is written.
    files.write_file(root, "srclink/via-link.txt", b"x")
    assert (root / "src" / "via-link.txt").read_bytes() == b"x"


def test_write_refusals(root: Path, outside: Path) -> None:
    """The root, a directory, a dangling link out of the root and a path under a file are
    refused."""
    with pytest.raises(InvalidInput):
        files.write_file(root, "", b"x")
    with pytest.raises(InvalidInput, match="directory"):
        files.write_file(root, "src", b"x")
    (root / "out-link").symlink_to(outside / "new-file.txt")
    with pytest.raises(InvalidInput):
        files.write_file(root, "out-link", b"x")
    assert not (outside / "new-file.txt").exists()
    with pytest.raises(InvalidInput):
        files.write_file(root, "README.md/child.txt", b"x")


def test_delete_files_dirs_and_links(root: Path, outside: Path) -> None:
    """Deleting removes a file, a whole directory, or a symlink itself (never its target,
    even one outside the root); the root and missing paths are refused."""
    assert files.delete_path(root, "src/pkg") == {"success": True, "path": "src/pkg"}
    assert not (root / "src" / "pkg").exists() and (root / "src" / "main.py").exists()
    files.delete_path(root, "README.md")
    assert not (root / "README.md").exists()
    files.delete_path(root, "escape")  # the link, not the directory it points at
    assert not (root / "escape").is_symlink()
    assert (outside / "secret.txt").read_text() == "top secret"
    files.delete_path(root, "srclink")
    assert (root / "src" / "main.py").exists()
    for bad in ("", ".", "./", "src/.."):
        with pytest.raises(InvalidInput):
            files.delete_path(root, bad)
    with pytest.raises(NotFound):
        files.delete_path(root, "missing")
    with pytest.raises(InvalidInput):
        files.delete_path(root, ".git")
    assert (root / ".git" / "config").exists()


def test_archive_zip(root: Path) -> None:
    """A zip holds the workspace's files (links inside as their content) without .git and
    without anything from outside the root."""
    data = files.archive(root, "", "zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert zf.read("src/pkg/mod.py") == b"x = 1\n"
        assert zf.read("readme-link") == b"# hello\n"
    assert {"README.md", "src/main.py", "blob.bin"} <= names
    assert not any(n.startswith((".git", "escape", "etclink", "gitlink")) for n in names)
    assert "secretlink" not in names and "dangling" not in names
    assert not any(n.startswith("srclink/") for n in names)
    sub = files.archive(root, "src", "zip")
    assert set(zipfile.ZipFile(io.BytesIO(sub)).namelist()) == {"main.py", "pkg/mod.py"}


def test_archive_tar(root: Path) -> None:
    """A gzipped tar keeps symlinks as links (never their targets' content), skips .git and
    special files, and has no ownership information."""
    os.mkfifo(root / "pipe")
    data = files.archive(root, "", "tar")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        mod = tf.extractfile("src/pkg/mod.py")
        assert mod is not None and mod.read() == b"x = 1\n"
    assert members["escape"].issym() and members["secretlink"].issym()
    assert not any(n.startswith(("escape/", "etclink/", ".git", "srclink/")) for n in members)
    assert "pipe" not in members
    assert {m.uid for m in members.values()} == {0} and {m.uname for m in members.values()} == {""}


def test_archive_refusals(root: Path) -> None:
    """An unknown format or a path leading out of the root is InvalidInput."""
    with pytest.raises(InvalidInput, match="format"):
        files.archive(root, "", "rar")
    with pytest.raises(InvalidInput):
        files.archive(root, "escape", "zip")
    with pytest.raises(NotFound):
        files.archive(root, "missing", "zip")


@pytest.fixture
def hardlinked(root: Path, outside: Path) -> Path:
    """The agent's ``ln ../outside/secret.txt`` (a hard link: no symlink to see through),
    also reached through a symlink inside the root."""
    os.link(outside / "secret.txt", root / "src" / "innocent.txt")
    (root / "via-symlink").symlink_to("src/innocent.txt")
    return root / "src" / "innocent.txt"


def test_hard_links_are_never_read(root: Path, hardlinked: Path) -> None:
    """Reading a hard link (st_nlink > 1) is refused like a symlink out of the root,
    directly or through an inner symlink; a file with one link reads as usual."""
    assert hardlinked.stat().st_nlink == 2
    for path in ("src/innocent.txt", "via-symlink"):
        with pytest.raises(InvalidInput, match="hard link"):
            files.read_file(root, path)
    assert files.read_file(root, "src/main.py")["content"] == "print('hi')\n"


def test_hard_links_are_never_written_through(root: Path, outside: Path, hardlinked: Path) -> None:
    """Writing to a hard link is refused and changes neither it nor the file outside."""
    with pytest.raises(InvalidInput, match="hard link"):
        files.write_file(root, "src/innocent.txt", b"pwned")
    assert (outside / "secret.txt").read_text() == "top secret"


def test_hard_links_are_left_out_of_archives(root: Path, hardlinked: Path) -> None:
    """Neither a zip nor a tar holds a hard link's content (nor an entry for it); the
    other files are all there."""
    with zipfile.ZipFile(io.BytesIO(files.archive(root, "", "zip"))) as zf:
        names = set(zf.namelist())
        contents = b"".join(zf.read(n) for n in names if not n.endswith("/"))
        assert zf.read("src/main.py") == b"print('hi')\n"
    assert "src/innocent.txt" not in names and "via-symlink" not in names
    assert b"top secret" not in contents

    with tarfile.open(fileobj=io.BytesIO(files.archive(root, "src", "tar")), mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert "innocent.txt" not in members and members["main.py"].isreg()
        for member in members.values():
            data = tf.extractfile(member) if member.isreg() else None
            assert data is None or b"top secret" not in data.read()
    with tarfile.open(fileobj=io.BytesIO(files.archive(root, "", "tar")), mode="r:gz") as tf:
        assert tf.getmember("via-symlink").issym()  # a link stays a link (just its text)
        assert "src/innocent.txt" not in tf.getnames()
