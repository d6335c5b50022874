"""TLS for goconn: ssl.SSLContext -> goconn_ssl_options, the ssl_object,
and peercert.

TLS runs in the Go core (crypto/tls), so what a Python SSLContext holds has
to be read out of it. Everything readable is taken: verify_mode,
check_hostname, minimum/maximum_version, the loaded CA certificates
(get_ca_certs(binary_form=True)), keylog_filename, the enabled ciphers and
the options flags (OP_NO_TLSv1_2, OP_NO_TLSv1_3, OP_NO_TICKET).

A plain SSLContext cannot give back its client certificate chain, its ALPN
protocols, or CAs that OpenSSL loads lazily from a folder (capath, and the
system folder behind load_default_certs when no bundle file is used).
goconn.SSLContext is an ssl.SSLContext that records those calls, so they
reach the Go core too. With a plain context those settings are lost.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import tempfile
import weakref
from typing import Any

from . import _ffi


class SSLContext(ssl.SSLContext):
    """An ssl.SSLContext that also records what goconn cannot read back from a
    plain context: load_cert_chain, set_alpn_protocols, load_verify_locations
    (capath) and load_default_certs / set_default_verify_paths. Use it
    exactly like ssl.SSLContext."""

    def __new__(cls, protocol=ssl.PROTOCOL_TLS_CLIENT, *args, **kwargs):
        self = super().__new__(cls, protocol, *args, **kwargs)
        self._goconn = {"cert_file": None, "key_file": None, "password": None, "alpn": None,
                        "ca_paths": [], "system_roots": False}
        return self

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        super().load_cert_chain(certfile, keyfile, password)
        if callable(password):
            password = password()
        if isinstance(password, str):
            password = password.encode()
        self._goconn.update(cert_file=os.fspath(certfile), key_file=os.fspath(keyfile) if keyfile else None,
                            password=bytes(password) if password is not None else None)

    def set_alpn_protocols(self, alpn_protocols):
        super().set_alpn_protocols(alpn_protocols)
        self._goconn["alpn"] = list(alpn_protocols)

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        super().load_verify_locations(cafile, capath, cadata)
        if capath is not None:
            self._goconn["ca_paths"].append(os.fspath(capath))

    def load_default_certs(self, purpose=ssl.Purpose.SERVER_AUTH):
        super().load_default_certs(purpose)
        self._goconn["system_roots"] = True

    def set_default_verify_paths(self):
        super().set_default_verify_paths()
        self._goconn["system_roots"] = True


def create_default_context(purpose=ssl.Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None) -> SSLContext:
    """ssl.create_default_context(), returning a goconn.SSLContext."""
    if purpose != ssl.Purpose.SERVER_AUTH:
        raise ValueError("goconn makes client connections only: use Purpose.SERVER_AUTH")
    ctx = SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile or capath or cadata:
        ctx.load_verify_locations(cafile, capath, cadata)
    else:
        ctx.load_default_certs(purpose)
    return ctx


_OPENSSL_VERSIONS = {
    ssl.TLSVersion.TLSv1: 0x0301,
    ssl.TLSVersion.TLSv1_1: 0x0302,
    ssl.TLSVersion.TLSv1_2: 0x0303,
    ssl.TLSVersion.TLSv1_3: 0x0304,
}


class _Prepared:
    """A context's goconn_ssl_options, with the buffers they point to."""

    def __init__(self, options: _ffi.SSLOptions, keep: list):
        self.options = options
        self.keep = keep


# Prepared options per context, recomputed when the context changes in a
# way we can see (its settings and its certificate store counts).
_prepared: "weakref.WeakKeyDictionary[ssl.SSLContext, tuple[Any, _Prepared]]" = weakref.WeakKeyDictionary()


def _fingerprint(ctx: ssl.SSLContext) -> tuple:
    extra = getattr(ctx, "_goconn", None)
    return (
        ctx.verify_mode, ctx.check_hostname, ctx.minimum_version, ctx.maximum_version, ctx.options,
        ctx.keylog_filename, tuple(sorted(ctx.cert_store_stats().items())),
        tuple(c["name"] for c in ctx.get_ciphers()),
        repr(extra) if extra is not None else None,
    )


def options_for(ctx: ssl.SSLContext) -> _Prepared:
    """The goconn_ssl_options that reproduce ctx, cached per context."""
    fp = _fingerprint(ctx)
    hit = _prepared.get(ctx)
    if hit is not None and hit[0] == fp:
        return hit[1]
    prepared = _prepare(ctx)
    _prepared[ctx] = (fp, prepared)
    return prepared


def _prepare(ctx: ssl.SSLContext) -> _Prepared:
    lib = _ffi.bind()
    o = _ffi.SSLOptions()
    rc = lib.goconn_ssl_options_init(ctypes.byref(o), _ffi.SSL_OPTIONS_VERSION)
    if rc != 0:
        from ._errors import raise_for_code

        raise_for_code(rc)
    keep: list = []

    def buf(data: bytes):
        b = ctypes.create_string_buffer(data, len(data))
        keep.append(b)
        return ctypes.cast(b, ctypes.c_void_p), len(data)

    def text(value):
        if value is None:
            return None
        b = os.fsencode(value) if not isinstance(value, bytes) else value
        keep.append(b)
        return b

    o.verify_mode = _ffi.VERIFY_NONE if ctx.verify_mode == ssl.CERT_NONE else _ffi.VERIFY_REQUIRED
    o.check_hostname = _ffi.CHECK_HOSTNAME_ON if ctx.check_hostname else _ffi.CHECK_HOSTNAME_OFF
    extra = getattr(ctx, "_goconn", None) or {}
    o.system_roots = _ffi.SYSTEM_ROOTS_ON if extra.get("system_roots") else _ffi.SYSTEM_ROOTS_OFF
    if ctx.verify_mode != ssl.CERT_NONE:
        cas = b"".join(ctx.get_ca_certs(binary_form=True))
        if cas:
            o.ca_data, o.ca_data_len = buf(cas)
        paths = extra.get("ca_paths") or []
        if paths:
            o.ca_path = text(paths[-1])
    o.min_version = _OPENSSL_VERSIONS.get(ctx.minimum_version, 0)
    o.max_version = _OPENSSL_VERSIONS.get(ctx.maximum_version, 0)
    if ctx.options & ssl.OP_NO_TLSv1_3:
        o.max_version = min(o.max_version or 0x0303, 0x0303)
    if ctx.options & ssl.OP_NO_TLSv1_2 and o.min_version < 0x0304:
        o.min_version = 0x0304
    if ctx.options & ssl.OP_NO_TICKET:
        o.no_session_cache = 1
    if ctx.keylog_filename:
        o.keylog_file = text(ctx.keylog_filename)
    names = [c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"]
    if names:
        o.ciphers = text(":".join(names))
    if extra.get("cert_file"):
        o.cert_file = text(extra["cert_file"])
        o.key_file = text(extra.get("key_file"))
        if extra.get("password") is not None:
            o.key_password = text(extra["password"])
    alpn = extra.get("alpn")
    if alpn:
        arr = (ctypes.c_char_p * len(alpn))(*[p.encode() for p in alpn])
        keep.append(arr)
        o.alpn_protocols = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        o.alpn_protocols_count = len(alpn)
    return _Prepared(o, keep)


def decode_cert(der: bytes) -> dict:
    """A DER certificate as SSLSocket.getpeercert() shows it, decoded by
    Python's own _ssl code."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    fd, path = tempfile.mkstemp(prefix="goconn-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        return ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    finally:
        os.unlink(path)


class SSLObject:
    """What get_extra_info('ssl_object') gives for a goconn TLS transport:
    the parts of ssl.SSLObject that describe the session."""

    server_side = False

    def __init__(self, context: ssl.SSLContext, info: dict, chain: list[bytes]):
        self.context = context
        self._info = info
        self._chain = chain
        self._peercert: dict | None = None
        self.server_hostname = info["server_hostname"]

    def version(self) -> str | None:
        return self._info["protocol"]

    def cipher(self) -> tuple[str, str, int]:
        return (self._info["cipher"], self._info["cipher_protocol"], self._info["cipher_bits"])

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def selected_alpn_protocol(self) -> str | None:
        return self._info["alpn"]

    def selected_npn_protocol(self):
        return None

    @property
    def session_reused(self) -> bool:
        return self._info["session_resumed"]

    def getpeercert(self, binary_form: bool = False):
        if not self._chain:
            return None
        if binary_form:
            return self._chain[0]
        if not self._info["verified"]:
            return {}
        if self._peercert is None:
            self._peercert = decode_cert(self._chain[0])
        return self._peercert

    def get_verified_chain(self) -> list[bytes]:
        return list(self._chain) if self._info["verified"] else []

    def get_unverified_chain(self) -> list[bytes]:
        return list(self._chain)

    def pending(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<goconn.SSLObject {self._info['protocol']} {self._info['cipher']}>"


def session_info(lib, handle) -> tuple[dict, list[bytes]]:
    """The TLS session of a transport handle, as Python values."""
    ti = _ffi.TLSInfo()
    ti.version = _ffi.TLS_INFO_VERSION
    if lib.goconn_transport_get_tls_info(handle, ctypes.byref(ti)) != 0:
        return {}, []

    def s(p):
        return p.decode() if p else None

    info = {
        "protocol": s(ti.protocol),
        "cipher": s(ti.cipher),
        "cipher_protocol": s(ti.cipher_protocol),
        "cipher_bits": ti.cipher_bits,
        "alpn": s(ti.alpn),
        "session_resumed": bool(ti.session_resumed),
        "server_hostname": s(ti.server_hostname),
        "verified": bool(ti.verified),
    }
    chain = []
    der = ctypes.c_void_p()
    n = ctypes.c_size_t()
    for i in range(ti.peer_certificates):
        if lib.goconn_transport_get_peer_certificate(handle, i, ctypes.byref(der), ctypes.byref(n)) == 0:
            chain.append(ctypes.string_at(der.value, n.value))
    return info, chain
