"""The workspace files endpoints, and that nothing outside the workspace can be reached."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from agentyard.testing.harness import ServerProcess, running_server, wait_status

COMMANDS = {
    "setup": {
        "argv": [
            "sh",
            "-c",
            "mkdir -p src && echo 'print(1)' > src/main.py && printf '\\000\\001' > blob.bin"
            " && ln -s /etc escape && ln -s /etc/hostname hostlink",
        ]
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_MAX_UPLOAD_BYTES": "200000"},
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def run_id(server: ServerProcess) -> str:
    with server.client() as c:
        body = c.post(
            "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "setup"}
        ).json()
        wait_status(c, body["runId"], {"completed"})
        return str(body["runId"])


def test_list_read_write_delete(client: httpx.Client, run_id: str) -> None:
    """Files are listed, read (text or base64), written (parents created) and deleted."""
    base = f"/api/v1/tasks/{run_id}/files"
    listing = client.get(base).json()
    names = {f["path"]: f["type"] for f in listing["files"]}
    assert names["src"] == "directory" and names["blob.bin"] == "file" and ".git" not in names
    deep = client.get(base, params={"recursive": "true"}).json()["files"]
    assert "src/main.py" in {f["path"] for f in deep}
    text = client.get(f"{base}/src/main.py").json()
    assert text == {
        "path": "src/main.py",
        "content": "print(1)\n",
        "encoding": "text",
        "mimeType": "text/x-python",
        "size": 9,
    }
    blob = client.get(f"{base}/blob.bin").json()
    assert blob["encoding"] == "base64" and base64.b64decode(blob["content"]) == b"\x00\x01"
    r = client.put(f"{base}/docs/new/readme.md", json={"content": "hi"})
    assert r.json() == {"success": True, "path": "docs/new/readme.md", "size": 2}
    r = client.put(
        f"{base}/bin.dat",
        json={"content": base64.b64encode(b"\xff").decode(), "encoding": "base64"},
    )
    assert r.json()["size"] == 1
    assert client.delete(f"{base}/docs").json()["success"] is True
    assert client.get(f"{base}/docs/new/readme.md").status_code == 404
    assert (
        client.put(f"{base}/x.txt", json={"content": "x", "encoding": "rot13"}).status_code == 400
    )


def test_upload_and_download(client: httpx.Client, run_id: str) -> None:
    """Multipart upload lands files in a directory; zip and tar archives hold the workspace
    without .git; an upload over the configured limit is 413."""
    base = f"/api/v1/tasks/{run_id}/files"
    r = client.post(
        f"{base}/upload",
        files=[("file", ("a.txt", b"aaa")), ("file", ("b.txt", b"bb"))],
        data={"path": "incoming"},
    )
    assert r.status_code == 201
    assert r.json()["uploaded"] == [
        {"name": "a.txt", "path": "incoming/a.txt", "size": 3},
        {"name": "b.txt", "path": "incoming/b.txt", "size": 2},
    ]
    assert client.post(f"{base}/upload", data={"path": "x"}).status_code == 400
    big = client.post(f"{base}/upload", files=[("file", ("big", b"x" * 300_000))])
    assert big.status_code == 413
    z = client.get(f"{base}/download")
    assert z.headers["content-type"] == "application/zip"
    assert f"workspace-{run_id[:8]}.zip" in z.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert "incoming/a.txt" in names and "src/main.py" in names
    assert not any(n.startswith(".git") for n in names) and "escape" not in names
    t = client.get(f"{base}/download", params={"format": "tar"})
    with tarfile.open(fileobj=io.BytesIO(t.content), mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert "src/main.py" in members and not any(n.startswith(".git") for n in members)
    assert members["escape"].issym()  # the link itself, never /etc's content
    assert not any(n.startswith("escape/") for n in members)
    assert client.get(f"{base}/download", params={"format": "rar"}).status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "../../../etc/passwd"),
        ("GET", "%2e%2e/%2e%2e/etc/passwd"),
        ("GET", "escape/passwd"),
        ("GET", "hostlink"),
        ("GET", ".git/config"),
        ("PUT", "escape/pwned"),
        ("PUT", "../outside.txt"),
        ("PUT", ".git/hooks/pre-commit"),
        ("DELETE", "escape/hostname"),
        # Percent-encoded, so that the client does not normalise the dots away.
        ("DELETE", "%2e%2e/"),
        ("DELETE", "src/%2e%2e/%2e%2e"),
    ],
)
def test_nothing_outside_the_workspace_is_reachable(
    client: httpx.Client, run_id: str, method: str, path: str
) -> None:
    """Traversal, symlinks out and .git are refused with 400 (or 404), and nothing changes."""
    r = client.request(method, f"/api/v1/tasks/{run_id}/files/{path}", json={"content": "x"})
    assert r.status_code in (400, 404), (path, r.status_code, r.text)
    assert os.path.exists("/etc/hostname")
    assert not os.path.exists("/etc/pwned")


def test_listing_outside_and_deleting_the_root_are_refused(
    client: httpx.Client, run_id: str
) -> None:
    """The list and download `path` parameters obey the same rules; the root stays."""
    base = f"/api/v1/tasks/{run_id}/files"
    assert client.get(base, params={"path": "../.."}).status_code == 400
    assert client.get(base, params={"path": "/etc"}).status_code == 400
    assert client.get(base, params={"path": "escape"}).status_code == 400
    assert client.get(f"{base}/download", params={"path": "escape"}).status_code == 400
    assert client.get(base, params={"path": "a\x00b"}).status_code == 400
    assert client.delete(f"{base}/%2e").status_code == 400
    long = "a" * 300
    assert client.get(base, params={"path": long}).status_code in (400, 404)
    assert client.put(f"{base}/{long}", json={"content": "x"}).status_code == 400
    assert client.delete(f"{base}/{long}").status_code in (400, 404)
    assert client.get(base).status_code == 200
