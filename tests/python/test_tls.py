"""Spec section 7: TLS in create_connection (ssl=), verification, contexts and the session.

Peers are asyncio TLS servers (asyncio.start_server with an ssl context), blocking
ssl.SSLContext.wrap_socket servers in threads, and `openssl s_server`; every certificate is
made at test time by the session's `pki` fixture (_util.PKI).

Documented departures of goconn, asserted explicitly where they show:

* a plain ssl.SSLContext cannot give back its client certificate chain, its ALPN protocols or
  the CAs OpenSSL loads lazily from a capath folder, so goconn loses them; goconn.SSLContext
  (an ssl.SSLContext subclass) records them and works with both connectors;
* goconn resumes TLS sessions made with the same context (asyncio does not);
* the negotiated cipher may differ (crypto/tls and OpenSSL prefer different suites), so cipher
  names are never compared across connectors;
* with TLS goconn calls the protocol factory after the handshake (asyncio before), so a failed
  handshake leaves asyncio with a protocol that saw no callback and goconn with none at all.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
from unittest import mock

import pytest

import goconn
from _util import (OpenSSLServer, Peer, Recorder, capture_handler, fd_count, settle_fds, ssl_error_location, tls_server,
                   warm_up)


class Factory:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self, cls=Recorder):
        self.cls = cls
        self.made = []

    def __call__(self):
        p = self.cls()
        self.made.append(p)
        return p

    def callbacks(self) -> list:
        return [e for p in self.made for e in p.events]


def _reference_handshake_error(ctx, port, server_hostname):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            with ctx.wrap_socket(s, server_hostname=server_hostname or None):
                pass
        except ssl.SSLError as exc:
            return exc
    raise AssertionError("the reference handshake succeeded")


async def reference_handshake_error(ctx, port, server_hostname):
    """The SSLError Python's own ssl module raises for this handshake (a blocking client in a
    thread): its str is what asyncio's SSLObject raises, '(_ssl.c:NNNN)' included."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _reference_handshake_error, ctx, port, server_hostname)


def subject_cn(cert: dict) -> str:
    return dict(item for rdn in cert["subject"] for item in rdn)["commonName"]


async def echo_once(tr, pr, data=b"ping\n"):
    """Write `data` and wait for it to come back (from an echo server)."""
    start = len(pr.data)
    tr.write(data)
    got = await pr.wait_bytes(start + len(data))
    return got[start:start + len(data)]


async def close_and_wait(tr, pr):
    tr.close()
    return await pr.wait_lost()


# ---- ssl=True: ssl.create_default_context() (7.1) -------------------------------------------


@pytest.fixture
def default_context(pki):
    """Patch ssl.create_default_context with one that trusts the test CA; yields the list of
    contexts it made (one per call)."""
    real = ssl.create_default_context
    made = []

    def fake(*args, **kwargs):
        assert args == () and kwargs == {}, "asyncio calls it without arguments"
        ctx = real(cafile=pki.cert("ca"))
        made.append(ctx)
        return ctx

    with mock.patch("ssl.create_default_context", side_effect=fake):
        yield made


@pytest.mark.parametrize("host, server_hostname, check_hostname, name, sni", [
    ("127.0.0.1", None, True, "127.0.0.1", None),  # defaults to host: the IP SAN is checked, no SNI
    ("localhost", None, True, "localhost", "localhost"),  # defaults to host
    ("127.0.0.1", "localhost", True, "localhost", "localhost"),
    ("127.0.0.1", "", False, None, None),  # '' turns the hostname check off, and SNI
])
async def test_ssl_true_calls_create_default_context_once_per_connection(connect, pki, default_context, host,
                                                                          server_hostname, check_hostname, name, sni):
    server_ctx = pki.server_context()
    seen_sni = []
    server_ctx.sni_callback = lambda sslobj, servername, sslctx: seen_sni.append(servername)
    server, port = await tls_server(server_ctx)
    async with server:
        kw = {} if server_hostname is None else {"server_hostname": server_hostname}
        for n in (1, 2):
            tr, pr = await connect(Recorder, host, port, ssl=True, **kw)
            assert len(default_context) == n  # exactly one call per connection
            ctx = default_context[-1]
            assert tr.get_extra_info("sslcontext") is ctx
            assert ctx.check_hostname is check_hostname
            assert ctx.verify_mode == ssl.CERT_REQUIRED
            assert tr.get_extra_info("ssl_object").server_hostname == name
            assert seen_sni == [sni] * n
            assert tr.get_extra_info("peercert") == pki.decoded("server")
            assert await echo_once(tr, pr) == b"ping\n"
            assert await close_and_wait(tr, pr) is None


async def test_ssl_true_is_checked_before_the_connection(connect, default_context):
    # Without a host, ssl=True needs server_hostname (check 1.2); no context is made.
    with pytest.raises(ValueError) as ei:
        await connect(Recorder, None, 443, ssl=True)
    assert str(ei.value) == "You must set server_hostname when using ssl without a host"
    assert default_context == []


@pytest.mark.parametrize("name, verify_code", [("server_other", None), ("server_rogue", 20)])
async def test_ssl_true_with_empty_server_hostname_still_verifies_the_chain(connect, pki, default_context,
                                                                            name, verify_code):
    # server_hostname='': no hostname check (a certificate for other.example is fine), but
    # the chain must still lead to a trusted CA.
    server, port = await tls_server(pki.server_context(name))
    async with server:
        if verify_code is None:
            tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=True, server_hostname="")
            assert subject_cn(tr.get_extra_info("peercert")) == "other.example"
            assert await echo_once(tr, pr) == b"ping\n"
            await close_and_wait(tr, pr)
        else:
            with pytest.raises(ssl.SSLCertVerificationError) as ei:
                await connect(Recorder, "127.0.0.1", port, ssl=True, server_hostname="")
            assert ei.value.verify_code == verify_code
            assert ei.value.reason == "CERTIFICATE_VERIFY_FAILED"
        assert len(default_context) == 1
        assert default_context[0].check_hostname is False


# ---- a verified connection: extra info (7.9) ---------------------------------------------------


async def test_verified_connection_extra_info(connect, pki):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    ctx = pki.client_context()
    server, port = await tls_server(pki.server_context())
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert "ssl" in type(tr).__name__.lower()  # test_events checks this
        assert pr.events == ["made"] and pr.transport is tr
        assert tr.get_extra_info("sslcontext") is ctx

        peercert = tr.get_extra_info("peercert")
        assert peercert == pki.decoded("server")  # Python's getpeercert() dict, all of it
        assert subject_cn(peercert) == "localhost"
        assert dict(item for rdn in peercert["issuer"] for item in rdn)["commonName"] == "goconn test CA"
        assert peercert["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
        assert {"version", "serialNumber", "notBefore", "notAfter"} <= set(peercert)

        obj = tr.get_extra_info("ssl_object")
        version = obj.version()
        assert version in ("TLSv1.2", "TLSv1.3")
        cipher = tr.get_extra_info("cipher")
        assert isinstance(cipher, tuple) and len(cipher) == 3
        assert isinstance(cipher[0], str) and cipher[1] == version and isinstance(cipher[2], int)
        assert obj.cipher() == cipher
        assert tr.get_extra_info("compression") is None
        assert obj.getpeercert() == peercert
        assert obj.getpeercert(binary_form=True) == pki.der("server")
        assert obj.selected_alpn_protocol() is None
        assert obj.server_hostname == "localhost"
        assert obj.server_side is False
        assert obj.context is ctx

        # anything else comes from the TCP transport underneath
        sockname = tr.get_extra_info("sockname")
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        assert sockname[0] == "127.0.0.1"
        sock = tr.get_extra_info("socket")
        assert type(sock).__name__ == "TransportSocket"  # the raw TCP socket, not an SSLSocket
        assert not isinstance(sock, ssl.SSLSocket)
        assert sock.getpeername() == ("127.0.0.1", port) and sock.getsockname() == sockname
        assert tr.get_extra_info("alpn_protocol", "dflt") == "dflt"  # there is no ALPN key
        assert tr.get_extra_info("no such key", 42) == 42

        assert await echo_once(tr, pr) == b"ping\n"
        assert await close_and_wait(tr, pr) is None
        assert tr.get_extra_info("sslcontext") is ctx  # extra info outlives the connection
    assert calls == []


async def test_plain_transport_has_no_ssl_extra_info(connect):
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port)
        for key in ("sslcontext", "peercert", "cipher", "compression", "ssl_object"):
            assert tr.get_extra_info(key) is None
            assert tr.get_extra_info(key, "dflt") == "dflt"
        tr.close()
        await pr.wait_lost()


# ---- verification failures (7.3, 7.6) ------------------------------------------------------------


async def assert_verify_failure(connect, pki, server_ctx, client_ctx, host, server_hostname,
                                verify_code, verify_message):
    """create_connection fails with asyncio's SSLCertVerificationError, no protocol sees a
    callback, the exception handler is not called and no descriptor is left open."""
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    await warm_up(connect)
    base = fd_count()
    server, port = await tls_server(server_ctx)
    async with server:
        reference = await reference_handshake_error(client_ctx, port, server_hostname or host)
        f = Factory()
        kw = {} if server_hostname is None else {"server_hostname": server_hostname}
        with pytest.raises(ssl.SSLCertVerificationError) as ei:
            await connect(f, host, port, ssl=client_ctx, **kw)
        exc = ei.value
        assert type(exc) is ssl.SSLCertVerificationError
        assert isinstance(exc, ssl.CertificateError) and isinstance(exc, ssl.SSLError)
        assert isinstance(exc, OSError) and isinstance(exc, ValueError)
        assert exc.reason == "CERTIFICATE_VERIFY_FAILED"
        assert exc.library == "SSL"
        assert exc.verify_code == verify_code
        assert exc.verify_message == verify_message
        assert str(exc) == str(reference)
        assert exc.args == reference.args and exc.errno == 1
        del ei, exc
        await asyncio.sleep(0.1)
        assert f.callbacks() == []  # no connection_made, no connection_lost
    assert await settle_fds(base) == base
    assert calls == []


@pytest.mark.parametrize("name, code, message", [
    ("server_rogue", 20, "unable to get local issuer certificate"),  # a CA nobody trusts
    ("server_rogue_chain", 19, "self-signed certificate in certificate chain"),  # the rogue CA sent along
    ("server_self", 18, "self-signed certificate"),  # a self-signed leaf (CA:FALSE)
])
async def test_untrusted_certificate(connect, pki, name, code, message):
    await assert_verify_failure(connect, pki, pki.server_context(name), pki.client_context(),
                                "127.0.0.1", "localhost", code, message)


async def test_untrusted_self_signed_ca_certificate(connect, pki, tls_files):
    # conftest's `openssl req -x509` certificate (CA:TRUE), trusted by nobody here.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*tls_files)
    await assert_verify_failure(connect, pki, server_ctx, pki.client_context(), "127.0.0.1", "localhost",
                                18, "self-signed certificate")


async def test_hostname_mismatch(connect, pki):
    await assert_verify_failure(connect, pki, pki.server_context(), pki.client_context(), "127.0.0.1",
                                "wronghost", 62, "Hostname mismatch, certificate is not valid for 'wronghost'.")


async def test_ip_literal_host_checks_the_ip_san(connect, pki):
    # server_hostname defaults to the host '127.0.0.1': an IP-SAN check.
    server, port = await tls_server(pki.server_context("server"))
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=pki.client_context())
        assert tr.get_extra_info("ssl_object").server_hostname == "127.0.0.1"
        assert await echo_once(tr, pr) == b"ping\n"
        await close_and_wait(tr, pr)
    await assert_verify_failure(connect, pki, pki.server_context("server_noip"), pki.client_context(),
                                "127.0.0.1", None, 64,
                                "IP address mismatch, certificate is not valid for '127.0.0.1'.")


async def test_verify_mode_cert_none(connect, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    server, port = await tls_server(pki.server_context("server_rogue"))
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="elsewhere")
        assert tr.get_extra_info("peercert") == {}
        obj = tr.get_extra_info("ssl_object")
        assert obj.getpeercert() == {}
        assert obj.getpeercert(binary_form=True) == pki.der("server_rogue")
        assert await echo_once(tr, pr) == b"ping\n"
        assert await close_and_wait(tr, pr) is None


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio leaks the connected socket (1.10)
async def test_server_side_context(connect, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False)
    except ssl.SSLError as exc:
        reference = exc
    f = Factory()
    with Peer() as peer:
        with pytest.raises(ssl.SSLError) as ei:
            await connect(f, "127.0.0.1", peer.port, ssl=ctx, server_hostname="localhost")
    assert type(ei.value) is ssl.SSLError
    assert str(ei.value).startswith("Cannot create a client socket with a PROTOCOL_TLS_SERVER context")
    assert str(ei.value) == str(reference)
    assert f.callbacks() == []


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio leaks the connected socket (1.10)
async def test_ssl_that_is_not_a_context(connect):
    # 1.10: any other truthy object is used as the context and fails where asyncio uses it.
    with Peer() as peer:
        with pytest.raises(AttributeError) as ei:
            await connect(Recorder, "127.0.0.1", peer.port, ssl=1, server_hostname="localhost")
    assert str(ei.value) == "'int' object has no attribute 'wrap_bio'"


# ---- client certificates -----------------------------------------------------------------------


async def client_cert_server(pki, seen):
    async def handler(reader, writer):
        seen.append(writer.get_extra_info("peercert"))
        data = await reader.readline()
        writer.write(data)
        await writer.drain()

    return await tls_server(pki.server_context(client_ca=True), handler)


@pytest.mark.parametrize("key, password", [
    ("client.key", None),
    ("client_enc.key", "str"),
    ("client_enc.key", "bytes"),
    ("client_enc.key", "callable"),
])
async def test_client_certificate_with_goconn_context(connect, pki, key, password):
    # goconn.SSLContext records load_cert_chain: the same code works with both connectors.
    pw = {None: None, "str": pki.CLIENT_KEY_PASSWORD, "bytes": pki.CLIENT_KEY_PASSWORD.encode(),
          "callable": lambda: pki.CLIENT_KEY_PASSWORD}[password]
    ctx = pki.client_context(goconn.SSLContext)
    ctx.load_cert_chain(pki.cert("client"), pki.path(key), password=pw)
    seen = []
    server, port = await client_cert_server(pki, seen)
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert await echo_once(tr, pr) == b"ping\n"
        assert [subject_cn(c) for c in seen] == ["goconn test client"]
        assert await close_and_wait(tr, pr) is None


async def test_client_certificate_with_plain_context(connect, pki):
    # A plain ssl.SSLContext works with asyncio.  Documented departure: goconn cannot read
    # the client certificate back out of it, sends none, and the server rejects it.
    ctx = pki.client_context()
    ctx.load_cert_chain(pki.cert("client"), pki.key("client"))
    seen = []
    server, port = await client_cert_server(pki, seen)
    async with server:
        try:
            tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError) as exc:
            assert connect.is_goconn, f"asyncio failed: {exc!r}"
            return
        tr.write(b"ping\n")
        await pr.until(lambda: pr.is_lost or len(pr.data) >= 5)
        if connect.is_asyncio:
            assert pr.data == b"ping\n"
            assert [subject_cn(c) for c in seen] == ["goconn test client"]
            assert await close_and_wait(tr, pr) is None
        else:  # the departure
            assert pr.data == b"" and pr.is_lost
            assert seen == []


async def test_client_certificate_required_but_not_sent(connect, pki):
    # openssl s_server -Verify 1 (TLS 1.3): the client finishes its handshake first, then the
    # server's certificate_required alert ends the connection.
    with OpenSSLServer(pki.cert("server"), pki.key("server"), "-Verify", "1", "-CAfile", pki.cert("ca"),
                       "-verify_return_error") as srv:
        tr, pr = await connect(Recorder, "127.0.0.1", srv.port, ssl=pki.client_context(),
                               server_hostname="localhost")
        exc = await pr.wait_lost()
        assert pr.kinds() == ["made", "lost"]
        assert type(exc) is ssl.SSLError
        assert exc.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED" and exc.library == "SSL"
        assert str(exc) == ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required "
                            + ssl_error_location("read"))  # raised by SSLObject.read()
        assert exc.args[0] == 1


async def test_client_certificate_required_tls12(connect, pki):
    # With TLS 1.2 the server's alert comes inside the handshake: create_connection fails.
    with OpenSSLServer(pki.cert("server"), pki.key("server"), "-tls1_2", "-Verify", "1",
                       "-CAfile", pki.cert("ca"), "-verify_return_error") as srv:
        f = Factory()
        with pytest.raises(ssl.SSLError) as ei:
            await connect(f, "127.0.0.1", srv.port, ssl=pki.client_context(), server_hostname="localhost")
        assert type(ei.value) is ssl.SSLError
        assert ei.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and ei.value.library == "SSL"
        reference = await reference_handshake_error(pki.client_context(), srv.port, "localhost")
        assert str(ei.value) == str(reference)
        assert f.callbacks() == []


# ---- ALPN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["python", "openssl"])
async def test_alpn_with_goconn_context(connect, pki, peer):
    ctx = pki.client_context(goconn.SSLContext)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if peer == "python":
        server, port = await tls_server(pki.server_context(alpn=["spdy/1", "h2"]))
        async with server:
            tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            assert tr.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
            await close_and_wait(tr, pr)
    else:
        with OpenSSLServer(pki.cert("server"), pki.key("server"), "-alpn", "http/1.1") as srv:
            tr, pr = await connect(Recorder, "127.0.0.1", srv.port, ssl=ctx, server_hostname="localhost")
            assert tr.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
            assert await echo_once(tr, pr, b"abc\n") == b"cba\n"  # s_server -rev
            await close_and_wait(tr, pr)


async def test_alpn_with_plain_context(connect, pki):
    # Documented departure: a plain SSLContext's ALPN list cannot be read back; goconn
    # offers no ALPN and the server selects none.
    ctx = pki.client_context()
    ctx.set_alpn_protocols(["h2"])
    server, port = await tls_server(pki.server_context(alpn=["h2"]))
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        expected = None if connect.is_goconn else "h2"
        assert tr.get_extra_info("ssl_object").selected_alpn_protocol() == expected
        await close_and_wait(tr, pr)


# ---- capath (CAs OpenSSL loads lazily) ----------------------------------------------------------


@pytest.fixture(scope="session")
def capath(pki):
    d = pki.path("capath")
    os.makedirs(d, exist_ok=True)
    shutil.copy(pki.cert("ca"), os.path.join(d, "ca.pem"))
    subprocess.run(["openssl", "rehash", d], check=True, capture_output=True)
    return d


@pytest.mark.parametrize("cls", ["goconn.SSLContext", "ssl.SSLContext"])
async def test_capath(connect, pki, capath, cls):
    ctx = (goconn.SSLContext if cls == "goconn.SSLContext" else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(capath=capath)
    server, port = await tls_server(pki.server_context())
    async with server:
        if connect.is_goconn and cls == "ssl.SSLContext":
            # Documented departure: a plain context's capath cannot be read back.
            with pytest.raises(ssl.SSLCertVerificationError) as ei:
                await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            assert ei.value.verify_code == 20
            return
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert tr.get_extra_info("peercert") == pki.decoded("server")
        await close_and_wait(tr, pr)


# ---- protocol versions ---------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["python", "openssl"])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
async def test_pinned_server_version(connect, pki, peer, version):
    ctx = pki.client_context()

    async def check(port, line, answer):
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        obj = tr.get_extra_info("ssl_object")
        assert obj.version() == version
        name, proto, bits = obj.cipher()
        assert proto == version and isinstance(name, str) and bits in (128, 256)
        assert tr.get_extra_info("cipher") == (name, proto, bits)
        assert tr.get_extra_info("peercert") == pki.decoded("server")
        assert await echo_once(tr, pr, line) == answer
        assert await close_and_wait(tr, pr) is None

    if peer == "python":
        tls_version = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
        server, port = await tls_server(pki.server_context(version=tls_version))
        async with server:
            await check(port, b"ping\n", b"ping\n")
    else:
        flag = "-tls1_2" if version == "TLSv1.2" else "-tls1_3"
        with OpenSSLServer(pki.cert("server"), pki.key("server"), flag) as srv:
            await check(srv.port, b"hello\n", b"olleh\n")


async def test_client_maximum_version(connect, pki):
    # The client's own limits are taken from the context.
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server, port = await tls_server(pki.server_context())
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert tr.get_extra_info("ssl_object").version() == "TLSv1.2"
        await close_and_wait(tr, pr)


# ---- session resumption (goconn only) ---------------------------------------------------------


@pytest.mark.asyncio_lacks("asyncio makes a new SSLObject per connection and never resumes a session "
                           "(documented departure: goconn resumes with the same context)")
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
async def test_session_resumption(connect, pki, version):
    tls_version = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    ctx = pki.client_context(goconn.SSLContext)
    server, port = await tls_server(pki.server_context(version=tls_version))
    async with server:
        reused = []
        for _ in range(2):
            tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            # a round trip, so a TLS 1.3 session ticket has arrived before the close
            assert await echo_once(tr, pr) == b"ping\n"
            obj = tr.get_extra_info("ssl_object")
            assert obj.version() == version
            reused.append(obj.session_reused)
            # the certificate of a resumed session is still there
            assert tr.get_extra_info("peercert") == pki.decoded("server")
            assert await close_and_wait(tr, pr) is None
        assert reused == [False, True]


async def test_keylog_filename_receives_the_session_secrets(connect, pki, tmp_path):
    """ctx.keylog_filename: the TLS secrets are appended in the NSS key log
    format that Wireshark reads, by OpenSSL for asyncio and by crypto/tls for
    goconn."""
    keylog = tmp_path / "keys.log"
    ctx = pki.client_context()
    ctx.keylog_filename = str(keylog)
    server, port = await tls_server(pki.server_context())
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        tr.close()
        await pr.wait_lost()
    labels = {line.split()[0] for line in keylog.read_text().splitlines() if line and not line.startswith("#")}
    if tr.get_extra_info("ssl_object").version() == "TLSv1.3":
        assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels, labels
    else:
        assert "CLIENT_RANDOM" in labels, labels
