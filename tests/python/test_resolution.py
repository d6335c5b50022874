"""Spec section 2: hosts, ports, name resolution and local_addr."""

import asyncio
import errno
import socket

import pytest

from _util import REFUSED_PORT, Peer, Recorder

P = asyncio.Protocol


def refused_text(host, port):
    addr = (host, port, 0, 0) if ":" in host else (host, port)
    return f"[Errno 111] Connect call failed {addr!r}"


async def expect_refused(connect, host, port, addr_host, addr_port, **kw):
    with pytest.raises(ConnectionRefusedError) as ei:
        await connect(P, host, port, **kw)
    e = ei.value
    assert type(e) is ConnectionRefusedError
    assert e.errno == errno.ECONNREFUSED
    assert str(e) == refused_text(addr_host, addr_port)
    assert e.strerror == str(e)[len("[Errno 111] "):]
    return e


# ---- numeric hosts ---------------------------------------------------------------------


async def test_refused_ipv4(connect):
    await expect_refused(connect, "127.0.0.1", REFUSED_PORT, "127.0.0.1", REFUSED_PORT)


async def test_refused_ipv6(connect):
    await expect_refused(connect, "::1", REFUSED_PORT, "::1", REFUSED_PORT)


async def test_refused_v4_mapped(connect):
    await expect_refused(connect, "::ffff:127.0.0.1", REFUSED_PORT, "::ffff:127.0.0.1", REFUSED_PORT)


async def test_bytes_host(connect):
    await expect_refused(connect, b"127.0.0.1", REFUSED_PORT, "127.0.0.1", REFUSED_PORT)


@pytest.mark.parametrize("port", [None, "", b""])
async def test_port_none_or_empty_is_zero(connect, port):
    await expect_refused(connect, "127.0.0.1", port, "127.0.0.1", 0)


@pytest.mark.parametrize("port", [1, "1", b"1", 1.9, True, " 1", "1_0"])
async def test_port_types_numeric_host(connect, port):
    expected = int(port)
    await expect_refused(connect, "127.0.0.1", port, "127.0.0.1", expected)


@pytest.mark.parametrize("host", ["127.000.000.001", "127.1", "LOCALHOST"])
async def test_host_spellings(connect, host):
    await expect_refused(connect, host, REFUSED_PORT, "127.0.0.1", REFUSED_PORT)


def _free_service():
    """A (name, port) service whose port nothing listens on here."""
    for name in ("http", "gopher", "finger", "telnet", "smtp", "ftp"):
        try:
            port = socket.getservbyname(name, "tcp")
        except OSError:
            continue
        s = socket.socket()
        s.settimeout(1)
        try:
            if s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED:
                return name, port
        finally:
            s.close()
    pytest.skip("no well-known service port is free here")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("as_bytes", [False, True])
async def test_service_name(connect, host, as_bytes):
    name, port = _free_service()
    service = name.encode() if as_bytes else name
    await expect_refused(connect, host, service, "127.0.0.1", port)


async def test_unknown_service(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "127.0.0.1", "nosuchservice")
    assert ei.value.errno == socket.EAI_SERVICE
    assert str(ei.value) == "[Errno -8] Servname not supported for ai_socktype"


@pytest.mark.parametrize("port", [99999, -1, 65536, "99999", "-1"])
async def test_port_out_of_range_numeric_host(connect, port):
    with pytest.raises(OverflowError) as ei:
        await connect(P, "127.0.0.1", port)
    assert str(ei.value) == "connect(): port must be 0-65535."


async def test_port_out_of_range_named_host(connect):
    # Known, deliberate departure (c): with a *named* host asyncio passes 99999 to glibc's
    # getaddrinfo, which silently wraps it to 99999 % 65536 == 34463; goconn refuses the
    # port with the OverflowError asyncio raises for numeric hosts.
    if connect.is_goconn:
        with pytest.raises(OverflowError) as ei:
            await connect(P, "localhost", 99999)
        assert str(ei.value) == "connect(): port must be 0-65535."
    else:
        probe = socket.socket()
        free = probe.connect_ex(("127.0.0.1", 34463)) == errno.ECONNREFUSED
        probe.close()
        if not free:
            pytest.skip("something listens on 127.0.0.1:34463 here")
        await expect_refused(connect, "localhost", 99999, "127.0.0.1", 34463)


async def test_negative_port_named_host(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "localhost", -1)
    assert ei.value.errno == socket.EAI_SERVICE


# ---- bad hosts ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.\x001", "local\x00host"])
async def test_embedded_nul(connect, host):
    with pytest.raises(ValueError) as ei:
        await connect(P, host, REFUSED_PORT)
    assert type(ei.value) is ValueError
    assert str(ei.value) == "embedded null character"


@pytest.mark.parametrize("host", ["a..b", "a" * 64 + ".com"])
async def test_idna_label_errors(connect, host):
    with pytest.raises(UnicodeError) as ei:
        await connect(P, host, REFUSED_PORT)
    assert str(ei.value) == "encoding with 'idna' codec failed (UnicodeError: label empty or too long)"


async def test_non_ascii_bytes_host(connect):
    # asyncio decodes a bytes host with the idna codec before anything else.
    with pytest.raises(UnicodeDecodeError):
        await connect(P, b"\xff", REFUSED_PORT)


@pytest.mark.parametrize("host", ["nonexistent.invalid", "", b"", "localhost.", "[::1]", "b\u00fccher.invalid"])
async def test_unknown_name(connect, host):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, host, REFUSED_PORT)
    assert ei.value.errno == socket.EAI_NONAME
    assert str(ei.value) == "[Errno -2] Name or service not known"


async def test_ipv4_literal_with_af_inet6(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, family=socket.AF_INET6)
    assert ei.value.errno == socket.EAI_ADDRFAMILY
    assert str(ei.value) == "[Errno -9] Address family for hostname not supported"


async def test_ipv6_literal_with_af_inet(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "::1", REFUSED_PORT, family=socket.AF_INET)
    assert ei.value.errno == socket.EAI_ADDRFAMILY


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("family", [12345, socket.AF_UNIX])
async def test_bad_family(connect, host, family):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, host, REFUSED_PORT, family=family)
    assert str(ei.value) == "[Errno -6] ai_family not supported"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_bad_proto(connect, host):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, host, REFUSED_PORT, proto=99)
    assert str(ei.value) == "[Errno -7] ai_socktype not supported"


async def test_udp_proto_forced_to_tcp_on_fast_path(connect):
    # Quirk: proto=17 with a numeric host is silently changed to 6.
    await expect_refused(connect, "127.0.0.1", REFUSED_PORT, "127.0.0.1", REFUSED_PORT, proto=17)


async def test_bad_flags(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "localhost", REFUSED_PORT, flags=0x12345)
    assert str(ei.value) == "[Errno -1] Bad value for ai_flags"


async def test_flags_reach_getaddrinfo(connect):
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "localhost", REFUSED_PORT, flags=socket.AI_NUMERICHOST)
    assert ei.value.errno == socket.EAI_NONAME


async def test_flags_ignored_on_fast_path(connect):
    await expect_refused(connect, "127.0.0.1", REFUSED_PORT, "127.0.0.1", REFUSED_PORT, flags=0x12345)


async def test_connect_fails_at_once_no_prefix(connect):
    # connect() failing synchronously passes the OS error through untouched.
    with pytest.raises(OSError) as ei:
        await connect(P, "255.255.255.255", REFUSED_PORT)
    assert ei.value.errno == errno.ENETUNREACH
    assert str(ei.value) == "[Errno 101] Network is unreachable"


async def test_localhost_is_ipv4_only_here(connect):
    await expect_refused(connect, "localhost", REFUSED_PORT, "127.0.0.1", REFUSED_PORT)


# ---- exotic argument types ---------------------------------------------------------------


@pytest.mark.parametrize("host", [1, 1.5])
async def test_non_string_host(connect, host):
    # asyncio's fast path evaluates '%' in host.
    with pytest.raises(TypeError) as ei:
        await connect(P, host, REFUSED_PORT)
    assert str(ei.value) == f"argument of type '{type(host).__name__}' is not iterable"


async def test_port_list_numeric_host(connect):
    # int([1]) fails, so asyncio asks getaddrinfo, which wants an int or a string.
    with pytest.raises(OSError) as ei:
        await connect(P, "127.0.0.1", [1])
    assert type(ei.value) is OSError
    assert str(ei.value) == "Int or String expected"


@pytest.mark.parametrize("port", [1.5, True])
async def test_port_non_int_named_host(connect, port):
    # No fast path for a name: getaddrinfo accepts only an exact int, str or bytes port.
    with pytest.raises(OSError) as ei:
        await connect(P, "localhost", port)
    assert type(ei.value) is OSError
    assert str(ei.value) == "Int or String expected"


async def test_repeated_arguments_give_the_same_outcome(connect):
    # goconn remembers the text of (host, port) pairs that passed its checks; equal
    # values of other types (True == 1 == 1.0) and pairs that failed are not mixed up.
    for _ in range(2):
        for port, expected in ((1, 1), (True, 1), (1.9, 1), ("1", 1), (b"1", 1), (0, 0)):
            await expect_refused(connect, "127.0.0.1", port, "127.0.0.1", expected)
        for host, port, exc_type, text in (
            (1, REFUSED_PORT, TypeError, "argument of type 'int' is not iterable"),
            ("127.0.0.1", [1], OSError, "Int or String expected"),
            ("localhost", 1.5, OSError, "Int or String expected"),
            ("127.0.0.1\x00", 1, ValueError, "embedded null character"),
        ):
            with pytest.raises(exc_type) as ei:
                await connect(P, host, port)
            assert str(ei.value) == text
        for family in (2.0, socket.AF_INET, 2.0):  # 2.0 == 2, but inet_pton wants an int
            expected = TypeError if type(family) is float else ConnectionRefusedError
            with pytest.raises(expected):
                await connect(P, "127.0.0.1", REFUSED_PORT, family=family)


# ---- host=None ---------------------------------------------------------------------------


async def test_port_only_tries_loopback_both_families(connect):
    # getaddrinfo(None, port) without AI_PASSIVE gives ::1 then 127.0.0.1 (whatever
    # /etc/hosts says), so both refusals are aggregated.
    with pytest.raises(OSError) as ei:
        await connect(P, None, REFUSED_PORT)
    assert type(ei.value) is OSError
    assert ei.value.errno is None
    assert str(ei.value) == (
        "Multiple exceptions: "
        + refused_text("::1", REFUSED_PORT) + ", " + refused_text("127.0.0.1", REFUSED_PORT)
    )


async def test_port_only_connects_to_loopback(connect):
    with Peer("127.0.0.1") as peer:
        tr, pr = await connect(Recorder, None, peer.port)
        try:
            assert tr.get_extra_info("peername") == ("127.0.0.1", peer.port)
        finally:
            tr.close()
        await pr.wait_lost()


# ---- local_addr --------------------------------------------------------------------------


def _free_port(host="127.0.0.1", family=socket.AF_INET):
    s = socket.socket(family)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("lhost", ["127.0.0.1", "localhost"])
async def test_local_addr_success(connect, lhost):
    with Peer() as peer:
        lport = _free_port()
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port, local_addr=(lhost, lport))
        conn = await peer.accept()
        try:
            assert tr.get_extra_info("sockname") == ("127.0.0.1", lport)
            assert conn.getpeername() == ("127.0.0.1", lport)
        finally:
            tr.close()
        await pr.wait_lost()


async def test_local_addr_port_as_string(connect):
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port, local_addr=("127.0.0.1", "0"))
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        await pr.wait_lost()


async def test_local_addr_none_host_is_loopback(connect):
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port, local_addr=(None, 0))
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        await pr.wait_lost()


async def test_local_addr_ipv6_four_tuple(connect):
    with Peer("::1", socket.AF_INET6) as peer:
        tr, pr = await connect(Recorder, "::1", peer.port, local_addr=("::1", 0, 0, 0))
        sn = tr.get_extra_info("sockname")
        assert sn[0] == "::1" and len(sn) == 4
        tr.close()
        await pr.wait_lost()


async def test_local_addr_in_use(connect):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with Peer() as peer:
            with pytest.raises(OSError) as ei:
                await connect(P, "127.0.0.1", peer.port, local_addr=("127.0.0.1", port))
        e = ei.value
        assert type(e) is OSError
        assert e.errno == errno.EADDRINUSE
        assert str(e) == (
            f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): "
            "address already in use"
        )
        assert str(("127.0.0.1", port)) in e.strerror
    finally:
        busy.close()


async def test_local_addr_cannot_assign(connect):
    with pytest.raises(OSError) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, local_addr=("10.254.254.254", 0))
    assert type(ei.value) is OSError
    assert ei.value.errno == errno.EADDRNOTAVAIL
    assert str(ei.value) == (
        "[Errno 99] error while attempting to bind on address ('10.254.254.254', 0): "
        "cannot assign requested address"
    )


@pytest.mark.parametrize("host,laddr,fam", [
    ("::1", ("127.0.0.1", 0), "<AddressFamily.AF_INET6: 10>"),
    ("127.0.0.1", ("::1", 0), "<AddressFamily.AF_INET: 2>"),
])
async def test_local_addr_family_mismatch(connect, host, laddr, fam):
    with pytest.raises(OSError) as ei:
        await connect(P, host, REFUSED_PORT, local_addr=laddr)
    e = ei.value
    assert type(e) is OSError
    assert e.errno is None
    assert str(e) == f"no matching local address with family={fam} found"


@pytest.mark.parametrize("laddr,exc_type,text", [
    (("", 0), socket.gaierror, "[Errno -2] Name or service not known"),
    (("nonexistent.invalid", 0), socket.gaierror, "[Errno -2] Name or service not known"),
    (("127.0.0.\x001", 0), ValueError, "embedded null character"),
    (("127.0.0.1", 99999), OverflowError, "bind(): port must be 0-65535."),
    (("127.0.0.1",), ValueError, "not enough values to unpack (expected 2, got 1)"),
    ((1, 0), TypeError, "argument of type 'int' is not iterable"),
])
async def test_local_addr_errors(connect, laddr, exc_type, text):
    with pytest.raises(exc_type) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, local_addr=laddr)
    assert type(ei.value) is exc_type
    assert str(ei.value) == text


async def test_remote_resolved_before_local(connect):
    # Both fail: the remote's error wins because it is resolved first (2.7).
    with pytest.raises(socket.gaierror) as ei:
        await connect(P, "nonexistent.invalid", REFUSED_PORT, local_addr=("", 0))
    assert ei.value.errno == socket.EAI_NONAME
    with pytest.raises(ValueError):
        await connect(P, "127.0.0.1\x00", REFUSED_PORT, local_addr=("nonexistent.invalid", 0))


async def test_local_addr_with_list(connect):
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port, local_addr=["127.0.0.1", 0])
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        await pr.wait_lost()
