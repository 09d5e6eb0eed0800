"""URL uploads reach public addresses only unless the user opts in, redirects included, and a
redirect loop is a clear error. Public addresses are real here: a network namespace of the test's
own gives its loopback a public address (the public internet itself is not reachable)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mllib.datasets.addresses import is_public
from tests.conftest import unavailable
from tests.datasets.helpers import mllib_cli, stored_chunks, write_config

PUBLIC = "93.184.216.34"  # a public address, given to the namespace's loopback only


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("172.16.5.4", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
        (PUBLIC, True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
    ],
)
def test_what_counts_as_public(address, public):
    assert is_public(address) is public


def test_a_loopback_url_is_refused_unless_asked_and_leaves_nothing(project: Path, server) -> None:
    write_config(project, allow_private_urls=False)
    server.files["/d.bin"] = b"internal data\n"
    refused = mllib_cli(project, "data", "upload", server.url("/d.bin"), "--name", "d")
    assert refused.returncode == 2, refused.output
    assert "reaches 127.0.0.1, a loopback or private address" in refused.stderr
    assert "--allow-private-urls" in refused.stderr and "Traceback" not in refused.output
    assert server.requests == [] and stored_chunks(project) == set()
    assert mllib_cli(project, "data", "list", "--json").json() == []
    uploads = project / ".mllib" / "store" / "datasets" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []

    allowed = mllib_cli(
        project, "data", "upload", server.url("/d.bin"), "--name", "d", "--allow-private-urls"
    )
    assert allowed.returncode == 0, allowed.output
    write_config(project, allow_private_urls=True)  # or for every upload of the project
    again = mllib_cli(project, "data", "upload", server.url("/d.bin"), "--name", "d2")
    assert again.returncode == 0, again.output


SERVER = textwrap.dedent(
    """
    import sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            print(self.server.server_address[0], self.path, flush=True)

        def do_GET(self):
            inner = "http://127.0.0.1:%d" % internal.server_address[1]
            routes = {"/to-internal": inner + "/secret", "/loop": "/loop", "/hop": "/to-internal"}
            if self.path in routes:
                self.send_response(302)
                self.send_header("Location", routes[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"secret of the internal network\\n" if self.path == "/secret" else b"a,b\\n1,2\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    public = ThreadingHTTPServer((sys.argv[1], 0), Handler)
    internal = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    for srv in (public, internal):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ready", public.server_address[1], flush=True)
    threading.Event().wait()
    """
)


@pytest.fixture
def public_server() -> Iterator[tuple[str, str, subprocess.Popen]]:
    """A namespace whose loopback also holds a public address, with an HTTP server there that
    redirects into the namespace's 127.0.0.1. Yields (namespace, base URL, server)."""
    if os.geteuid() != 0 or subprocess.run(["which", "ip"], capture_output=True).returncode:
        unavailable("network namespaces need root and iproute2")
    ns = f"mllib-url-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        add = ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo"]
        subprocess.run(add, check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, PUBLIC],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        ready, port = proc.stdout.readline().split()
        assert ready == "ready"
        yield ns, f"http://{PUBLIC}:{port}", proc
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def in_namespace(ns: str, project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "mllib", *args],
        cwd=project,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_public_url_redirecting_inward_is_refused_before_the_inner_request(
    project: Path, public_server
) -> None:
    ns, base, proc = public_server
    write_config(project, allow_private_urls=False)
    fine = in_namespace(ns, project, "data", "upload", f"{base}/data.csv", "--name", "pub")
    assert fine.returncode == 0, fine.stderr  # a public address needs no opt-in

    for start in ("/to-internal", "/hop"):
        refused = in_namespace(ns, project, "data", "upload", base + start, "--name", "in")
        assert refused.returncode == 2, refused.stderr
        assert "reaches 127.0.0.1, a loopback or private address" in refused.stderr
        assert "Traceback" not in refused.stderr

    looped = in_namespace(ns, project, "data", "upload", f"{base}/loop", "--name", "loop")
    assert looped.returncode == 1, looped.stderr
    assert "redirected more than 10 times (a redirect loop?)" in looped.stderr
    assert "Traceback" not in looped.stderr

    allowed = in_namespace(
        ns, project, "data", "upload", f"{base}/to-internal", "--name", "in", "--allow-private-urls"
    )
    assert allowed.returncode == 0, allowed.stderr
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    served = proc.stdout.read().splitlines()
    # The internal server answered only the request the user allowed.
    assert [line for line in served if line.startswith("127.0.0.1")] == ["127.0.0.1 /secret"]
