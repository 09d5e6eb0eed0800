"""What mllib.serving.server.litserve_internals relies on in LitServe and uvicorn is still there.

Each check names a private name, signature or behaviour the module was written against (LitServe
0.2.19, uvicorn 0.55). A failure here after an upgrade means: reread litserve_internals.py against
the new release, fix what changed, then update the expectation. Real objects throughout: a real
LitServer is built (nothing is started), a real reply travels a real pipe into LitServe's own
response-buffer task, a real socket is bound.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import tomllib
from importlib.metadata import version
from pathlib import Path

import litserve as ls
import pytest
import uvicorn
from litserve.loops.base import LitLoop
from litserve.loops.loops import inference_worker
from litserve.server import response_queue_to_buffer
from litserve.transport.base import MessageTransport
from packaging.requirements import Requirement
from packaging.version import Version
from starlette.middleware.gzip import GZipMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mllib.serving.server import litserve_internals as internals
from mllib.serving.server.board import WorkerBoard
from mllib.serving.server.gateway import Gateway
from mllib.serving.server.main import MllibLitServer
from mllib.serving.server.modelapi import ModelAPI
from mllib.serving.spec import Servable, ServerSpec

ROOT = Path(__file__).resolve().parents[2]

# LitServer's private steps as LitServe 0.2.19 calls them: (name, its parameters).
LITSERVER_STEPS = {
    "_init_manager": ["self", "num_api_servers"],
    "launch_inference_worker": ["self", "lit_api"],
    "verify_worker_status": ["self"],
    "_start_server": [
        "self",
        "port",
        "num_uvicorn_servers",
        "log_level",
        "sockets",
        "uvicorn_worker_type",
        "kwargs",
    ],
    "_start_worker_monitoring": ["self", "manager", "uvicorn_workers"],
    "_perform_graceful_shutdown": ["self", "manager", "uvicorn_workers", "shutdown_reason"],
}
# What the module calls or reads of LitServe's and uvicorn's private API: (owner, name, parameters).
CALLED = [
    (ls.LitServer, "_prepare_app_run", ["self", "app"]),
    (ls.LitServer, "_get_request_queue", ["self", "api_path"]),
    (ls.server._Server, "run", ["self", "worker_id", "sockets"]),
    (uvicorn.Server, "shutdown", ["self", "sockets"]),
    (uvicorn.Config, "bind_socket", ["self"]),
    (HttpToolsProtocol, "connection_made", ["self", "transport"]),
    # OneWriteHttpToolsProtocol answers /predict as an Exchange in place of uvicorn's cycle:
    (HttpToolsProtocol, "on_headers_complete", ["self"]),
    (HttpToolsProtocol, "on_body", ["self", "body"]),
    (HttpToolsProtocol, "on_message_complete", ["self"]),
    (HttpToolsProtocol, "on_response_complete", ["self"]),
    (HttpToolsProtocol, "_start_asgi_task", ["self", "cycle", "app"]),
    (HttpToolsProtocol, "_unset_keepalive_if_required", ["self"]),
    (MessageTransport, "send", ["self", "item", "consumer_id"]),
]
LOOP_ARGS = [
    "lit_api", "device", "worker_id", "request_queue", "transport", "workers_setup_status",
    "callback_runner",
]  # fmt: skip


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("package", sorted(internals.REQUIREMENTS))
def test_the_installed_version_is_one_the_module_is_written_for(package):
    allowed = internals.REQUIREMENTS[package]
    installed = Version(version(package))
    assert installed in Requirement(f"{package}{allowed}").specifier, (
        f"{package} {installed} is outside {allowed}: reread litserve_internals.py against it"
    )
    # pyproject.toml allows the same range, so an install never picks a version unchecked here.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    assert {str(r.specifier) for r in declared if r.name == package} == {
        str(Requirement(f"{package}{allowed}").specifier)
    }


def test_litservers_private_steps_keep_the_signatures_they_are_overridden_with():
    overridden = {
        name
        for name, value in vars(internals.LitServerBase).items()
        if callable(value) and hasattr(ls.LitServer, name) and name != "__init__"
    }
    assert overridden == set(LITSERVER_STEPS), "record every override (and its signature) above"
    for name, expected in LITSERVER_STEPS.items():
        assert parameters(getattr(ls.LitServer, name)) == expected, f"LitServer.{name} changed"


@pytest.mark.parametrize(
    ("owner", "name", "expected"), CALLED, ids=lambda v: getattr(v, "__name__", v)
)
def test_the_private_api_it_calls_keeps_its_signature(owner, name, expected):
    assert parameters(getattr(owner, name)) == expected


def test_litserve_runs_a_custom_loop_with_the_arguments_modelloop_takes():
    assert parameters(LitLoop.run)[1:] == LOOP_ARGS
    assert parameters(internals.ModelLoop.run)[1:] == LOOP_ARGS
    assert parameters(LitLoop.__call__)[1:] == LOOP_ARGS
    assert parameters(inference_worker)[:5] == [*LOOP_ARGS[:4], "transport"]


def test_litserve_binds_through_uvicorn_config_and_names_its_workers_in_the_environment():
    # reuse_port replaces uvicorn.Config.bind_socket: LitServer.run must bind through it.
    assert "config.bind_socket()" in inspect.getsource(ls.LitServer.run)
    # current_worker_id reads what LitServe's worker entry point sets.
    assert 'os.environ["LITSERVE_WORKER_ID"]' in inspect.getsource(inference_worker)
    # ApiServer.shutdown closes the listeners uvicorn keeps in Server.servers before shutting down.
    assert "self.servers" in inspect.getsource(uvicorn.Server.startup)


def spec_for_tests(tmp_path: Path) -> ServerSpec:
    servable = Servable("m", 1, "r1", "a" * 64, "b" * 64, "model.py", "M")
    return ServerSpec(
        servable=servable,
        bundle_dir=str(tmp_path),
        env="dev",
        state_dir=str(tmp_path),
        inference="worker",
        drain_s=1.5,
    )


@pytest.fixture
def server(tmp_path) -> MllibLitServer:
    """mllib's LitServer, built but not started (building it starts no process)."""
    spec = spec_for_tests(tmp_path)
    board = WorkerBoard(spec.workers)
    built = MllibLitServer(spec, Gateway(spec, board, ModelAPI(spec, board)))
    built.starting = lambda: None  # it would route this test process's logging to stderr
    return built


def test_litserver_adds_gzip_which_mllibs_server_takes_off_again(server, tmp_path):
    spec = spec_for_tests(tmp_path)
    plain = ls.LitServer(ModelAPI(spec, WorkerBoard(1)), accelerator="cpu")
    assert GZipMiddleware in [m.cls for m in plain.app.user_middleware]
    assert GZipMiddleware not in [m.cls for m in server.app.user_middleware]
    assert server.uvicorn_graceful_timeout == 1.5


def test_init_manager_sets_up_what_run_and_the_workers_use_without_a_manager_process(server):
    import multiprocessing

    children = multiprocessing.active_children()
    manager = server._init_manager(2)
    assert multiprocessing.active_children() == children  # no Manager process
    manager.shutdown()
    assert server.transport_config.num_consumers == 2
    assert isinstance(server._transport, internals.PipeTransport)
    assert server._get_request_queue(internals.API_PATH) is not None
    assert [api.api_path for api in server.litapi_connector] == [internals.API_PATH]
    assert not server.stop_requested
    server.request_stop()
    assert server.stop_requested


class EchoAPI:
    """What ModelLoop asks of a LitAPI: answer_batch([(request_id, body), ...]),
    queue_timeout_s, and whether (batches), how many (max_batch) and how long to wait
    (batch_timeout_s) to answer requests together."""

    queue_timeout_s = 5.0
    batches = False
    max_batch = 1
    batch_timeout_s = 0.0

    def answer_batch(self, jobs: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
        return [(200, request_id.encode() + b":" + body) for request_id, body in jobs]


def test_a_workers_reply_reaches_the_api_server_through_litserves_response_buffer(server):
    """WorkerChannel -> request queue -> ModelLoop (a worker) -> PipeTransport -> LitServe's own
    response_queue_to_buffer task -> LitServe's ResponseBufferItem -> the reply."""
    server._init_manager(1)
    server.app.response_queue_id = 0
    queue = server._get_request_queue(internals.API_PATH)
    worker = threading.Thread(
        target=internals.ModelLoop().run,
        args=(EchoAPI(), "cpu", 0, queue, server._transport, {}, None),
        daemon=True,
    )
    worker.start()

    async def ask() -> tuple:
        buffering = asyncio.create_task(
            response_queue_to_buffer(
                server._transport, server.response_buffer, 0, server.litapi_connector
            )
        )
        channel = internals.WorkerChannel(server)
        try:
            return await channel.ask("req-1", b'{"x": 1}', timeout_s=10)
        finally:
            buffering.cancel()

    try:
        assert asyncio.run(ask()) == (200, b'req-1:{"x": 1}')
        assert server.response_buffer == {}
    finally:
        queue.put(None)  # ModelLoop's stop
        worker.join(timeout=10)
    assert not worker.is_alive()


def test_reuse_port_binds_with_so_reuseport_while_it_is_on_and_restores_uvicorn_after():
    original = uvicorn.Config.bind_socket
    with internals.reuse_port(True):
        config = uvicorn.Config(app=None, host="127.0.0.1", port=0)
        sock = config.bind_socket()
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        sock.close()
    assert uvicorn.Config.bind_socket is original
