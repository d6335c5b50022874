"""Shared fixtures of goconn's Python behaviour suite.

Every behavioural test is written once and runs against two connectors:

* ``asyncio``: the running loop's own ``loop.create_connection`` (the reference);
* ``goconn``: ``goconn.create_connection`` (and ``goconn.install(loop)`` for the paths that
  go through ``loop.create_connection``: ``asyncio.open_connection``, ``loop.start_tls``...).

A test asks for the ``connect`` fixture and gets a :class:`Connector`.  Calling it has
``loop.create_connection``'s signature.  Where the two connectors legitimately differ the test
says so explicitly with ``connect.is_goconn`` and a comment; anything else is asserted as
asyncio's behaviour, so a goconn difference fails the goconn case.

``async def`` tests are run by the small runner below (pytest-asyncio is not available): each
gets a fresh event loop, a time limit, and a faulthandler watchdog in case something hangs in C.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import inspect
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON_DIR = os.path.join(ROOT, "python")
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import goconn  # noqa: E402

# The wall-clock limit of one async test (the whole suite should stay near two minutes).
ASYNC_TEST_TIMEOUT = 30.0

ASYNCIO_TRANSPORT = "_SelectorSocketTransport"
GOCONN_TRANSPORT = "GoconnTransport"


class Connector:
    """One way of making connections: asyncio's own, or goconn's."""

    def __init__(self, name: str):
        self.name = name
        self.is_goconn = name == "goconn"
        self.is_asyncio = name == "asyncio"

    def __repr__(self) -> str:
        return f"<Connector {self.name}>"

    async def __call__(self, protocol_factory, host=None, port=None, **kwds):
        """create_connection(protocol_factory, host, port, **kwds) on the running loop."""
        if self.is_goconn:
            return await goconn.create_connection(protocol_factory, host, port, **kwds)
        loop = asyncio.get_running_loop()
        return await loop.create_connection(protocol_factory, host, port, **kwds)

    create_connection = __call__

    def route(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.AbstractEventLoop:
        """Make `loop` (default: the running one) send loop.create_connection through this
        connector, so asyncio.open_connection, StreamWriter.start_tls and friends use it."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if self.is_goconn:
            goconn.install(loop)
        return loop

    async def open_connection(self, host=None, port=None, **kwds):
        """The module-level open_connection of this connector."""
        if self.is_goconn:
            return await goconn.open_connection(host, port, **kwds)
        return await asyncio.open_connection(host, port, **kwds)

    @property
    def transport_class(self) -> str:
        return GOCONN_TRANSPORT if self.is_goconn else ASYNCIO_TRANSPORT


def normalise(text: str) -> str:
    """Known departure (b): goconn's transport class is GoconnTransport where asyncio's is
    _SelectorSocketTransport.  Messages that embed the class name are compared after this;
    reprlib-shortened reprs ('<_SelectorSoc...' in callback handles) are mapped as well."""
    return text.replace(GOCONN_TRANSPORT, ASYNCIO_TRANSPORT).replace("<GoconnTransp...", "<_SelectorSoc...")


@pytest.fixture(params=["asyncio", "goconn"])
def connect(request) -> Connector:
    return Connector(request.param)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "asyncio_lacks(reason, until=(3, 12)): this asyncio has no such feature (before `until`); "
        "skip only the asyncio case",
    )
    config.addinivalue_line("markers", "timeout(seconds): the time limit of one async test")


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("asyncio_lacks")
        if mark is None:
            continue
        if sys.version_info >= tuple(mark.kwargs.get("until", (99,))):
            continue  # this asyncio has it: run both connectors
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("connect") == "asyncio":
            reason = mark.args[0] if mark.args else "not in asyncio 3.11"
            item.add_marker(pytest.mark.skip(reason=f"asyncio {sys.version_info[0]}.{sys.version_info[1]}: {reason}"))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    timeout = ASYNC_TEST_TIMEOUT
    mark = pyfuncitem.get_closest_marker("timeout")
    if mark is not None:
        timeout = float(mark.args[0])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    faulthandler.dump_traceback_later(timeout + 30, exit=True)
    try:
        loop.run_until_complete(asyncio.wait_for(fn(**kwargs), timeout))
    finally:
        faulthandler.cancel_dump_traceback_later()
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            del loop
            gc.collect()  # free what the test left behind now, not during a later test
    return True


def _cancel_all(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for localhost/127.0.0.1, made at test time with openssl
    (never committed).  Returns (certfile, keyfile)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
def tls_contexts(tls_files):
    """(server_context, client_context) trusting the test certificate."""
    import ssl

    cert, key = tls_files
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The test PKI of _util.PKI (CAs, server and client certificates), made once per session
    with the openssl command in a temporary folder."""
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    from _util import PKI

    return PKI(tmp_path_factory.mktemp("pki"))
