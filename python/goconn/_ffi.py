"""ctypes mirrors of include/goconn.h: structs, callback types, codes and
function signatures, set up in one table."""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_ssize_t,
    c_uint,
    c_uint32,
    c_void_p,
)

from . import _lib

# Struct versions this package fills in.
OPTIONS_VERSION = 2
PROTOCOL_VERSION = 2
SSL_OPTIONS_VERSION = 1
TLS_INFO_VERSION = 1

# Library codes (GOCONN_E*); system errors are -errno.
EINTERNAL = -10000
EPOISONED = -10001
EVERSION = -10002
EFORKED = -10003
EGAI = -10004
EOSERROR = -10005
EMULTIPLE = -10006
EGROUP = -10007
EOVERFLOW = -10008
ETIMEOUT = -10009
ENOTSTREAM = -10010
EFACTORY = -10011
EWRITEEOF = -10012
ECLOSING = -10013
EREENTRANT = -10014
ECERTVERIFY = -10015
EHOSTNAME = -10016
EHANDSHAKETIMEOUT = -10017
ETLS = -10018
EBUFFER = -10019

VERIFY_REQUIRED, VERIFY_NONE = 0, 1
CHECK_HOSTNAME_ON, CHECK_HOSTNAME_OFF = 0, 1
SYSTEM_ROOTS_AUTO, SYSTEM_ROOTS_ON, SYSTEM_ROOTS_OFF = 0, 1, 2

ATTEMPT_PENDING, ATTEMPT_WON, ATTEMPT_FAILED, ATTEMPT_CANCELLED, ATTEMPT_REFUSED, ATTEMPT_TIMED_OUT = 0, 1, 2, 3, 4, 5

NODELAY_ASYNCIO, NODELAY_ON, NODELAY_OFF = 0, 1, 2

LIMIT_DEFAULT = -(2**63)  # GOCONN_LIMIT_DEFAULT: Python's None


class Attempt(Structure):
    _fields_ = [
        ("version", c_uint),
        ("outcome", c_int),
        ("errnum", c_int),
        ("family", c_int),
        ("start_ns", c_int64),
        ("end_ns", c_int64),
        ("remote_host", c_char * 64),
        ("remote_port", c_int),
        ("remote_flowinfo", c_uint32),
        ("remote_scope_id", c_uint32),
        ("has_local", c_int),
        ("local_host", c_char * 64),
        ("local_port", c_int),
        ("local_scope_id", c_uint32),
        ("error", c_char_p),
    ]


class Resolution(Structure):
    _fields_ = [
        ("version", c_uint),
        ("family", c_int),
        ("start_ns", c_int64),
        ("end_ns", c_int64),
        ("count", c_size_t),
        ("errnum", c_int),
        ("error", c_char_p),
    ]


class AddrInfoC(Structure):
    """struct addrinfo (netdb.h), for pre-resolved addresses."""


AddrInfoC._fields_ = [
    ("ai_flags", c_int),
    ("ai_family", c_int),
    ("ai_socktype", c_int),
    ("ai_protocol", c_int),
    ("ai_addrlen", ctypes.c_uint32),
    ("ai_addr", c_void_p),
    ("ai_canonname", c_char_p),
    ("ai_next", POINTER(AddrInfoC)),
]


class Error(Structure):
    pass


Error._fields_ = [
    ("version", c_uint),
    ("code", c_int),
    ("errnum", c_int),
    ("message", c_char_p),
    ("strerror", c_char_p),
    ("ncauses", c_size_t),
    ("causes", POINTER(POINTER(Error))),
    ("nattempts", c_size_t),
    ("attempts", POINTER(POINTER(Attempt))),
    # version 2
    ("reason", c_char_p),
    ("library", c_char_p),
    ("verify_code", c_int),
    ("verify_message", c_char_p),
    # version 3
    ("nresolutions", c_size_t),
    ("resolutions", POINTER(POINTER(Resolution))),
]


class SSLOptions(Structure):
    _fields_ = [
        ("version", c_uint),
        ("verify_mode", c_int),
        ("check_hostname", c_int),
        ("system_roots", c_int),
        ("ca_file", c_char_p),
        ("ca_path", c_char_p),
        ("ca_data", c_void_p),
        ("ca_data_len", c_size_t),
        ("cert_file", c_char_p),
        ("key_file", c_char_p),
        ("key_password", c_char_p),
        ("cert_data", c_void_p),
        ("cert_data_len", c_size_t),
        ("key_data", c_void_p),
        ("key_data_len", c_size_t),
        ("min_version", c_int),
        ("max_version", c_int),
        ("alpn_protocols", POINTER(c_char_p)),
        ("alpn_protocols_count", c_size_t),
        ("keylog_file", c_char_p),
        ("ciphers", c_char_p),
        ("no_session_cache", c_int),
    ]


class TLSInfo(Structure):
    _fields_ = [
        ("version", c_uint),
        ("protocol_version", c_int),
        ("protocol", c_char_p),
        ("cipher", c_char_p),
        ("cipher_protocol", c_char_p),
        ("cipher_bits", c_int),
        ("alpn", c_char_p),
        ("session_resumed", c_int),
        ("server_hostname", c_char_p),
        ("verified", c_int),
        ("peer_certificates", c_size_t),
    ]

FACTORY = CFUNCTYPE(c_int, c_void_p, c_void_p, POINTER(c_void_p))
MADE = CFUNCTYPE(None, c_void_p, c_void_p)
DATA = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)
EOF = CFUNCTYPE(c_int, c_void_p)
LOST = CFUNCTYPE(None, c_void_p, POINTER(Error))
VOID = CFUNCTYPE(None, c_void_p)
GET_BUFFER = CFUNCTYPE(c_void_p, c_void_p, c_ssize_t, POINTER(c_size_t))
BUFFER_UPDATED = CFUNCTYPE(None, c_void_p, c_size_t)
DONE = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, POINTER(Error))


class Protocol(Structure):
    _fields_ = [
        ("version", c_uint),
        ("factory", FACTORY),
        ("connection_made", MADE),
        ("data_received", DATA),
        ("eof_received", EOF),
        ("connection_lost", LOST),
        ("pause_writing", VOID),
        ("resume_writing", VOID),
        ("get_buffer", GET_BUFFER),
        ("buffer_updated", BUFFER_UPDATED),
    ]


class Options(Structure):
    _fields_ = [
        ("version", c_uint),
        ("loop", c_void_p),
        ("host", c_char_p),
        ("host_len", c_size_t),
        ("port", c_char_p),
        ("family", c_int),
        ("proto", c_int),
        ("flags", c_int),
        ("has_sock", c_int),
        ("sock", c_int),
        ("has_local_addr", c_int),
        ("local_host", c_char_p),
        ("local_port", c_char_p),
        ("local_flowinfo", c_uint32),
        ("local_scope_id", c_uint32),
        ("ssl", POINTER(SSLOptions)),
        ("server_hostname", c_char_p),
        ("has_ssl_handshake_timeout", c_int),
        ("ssl_handshake_timeout", c_double),
        ("has_ssl_shutdown_timeout", c_int),
        ("ssl_shutdown_timeout", c_double),
        ("has_happy_eyeballs_delay", c_int),
        ("happy_eyeballs_delay", c_double),
        ("has_interleave", c_int),
        ("interleave", c_int),
        ("all_errors", c_int),
        ("tcp_nodelay", c_int),
        ("errbuf", c_void_p),
        ("errbuf_size", c_size_t),
        # version 2
        ("has_resolution_delay", c_int),
        ("resolution_delay", c_double),
        ("has_attempt_timeout", c_int),
        ("attempt_timeout", c_double),
        ("has_connect_timeout", c_int),
        ("connect_timeout", c_double),
        ("addrinfo", POINTER(AddrInfoC)),
        ("bind_address_no_port", c_int),
        ("keepalive", c_int),
        ("keepalive_idle", c_int),
        ("keepalive_interval", c_int),
        ("keepalive_count", c_int),
        ("on_trace", c_void_p),
        ("trace_userdata", c_void_p),
    ]


_SIGNATURES = {
    "goconn_abi_version": (c_int, []),
    "goconn_version": (c_char_p, []),
    "goconn_strerror": (c_char_p, [c_int]),
    "goconn_live_handles": (c_int, []),
    "goconn_loop_new": (c_int, [POINTER(c_void_p)]),
    "goconn_loop_fd": (c_int, [c_void_p]),
    "goconn_loop_dispatch": (c_int, [c_void_p, c_int]),
    "goconn_loop_free": (c_int, [c_void_p]),
    "goconn_options_init": (c_int, [POINTER(Options), c_uint]),
    "goconn_protocol_init": (c_int, [POINTER(Protocol), c_uint]),
    "goconn_open_connection": (
        c_int,
        [POINTER(Options), POINTER(Protocol), DONE, c_void_p, POINTER(c_void_p)],
    ),
    "goconn_request_cancel": (c_int, [c_void_p]),
    "goconn_transport_write": (c_int, [c_void_p, c_void_p, c_size_t]),
    "goconn_transport_write_eof": (c_int, [c_void_p]),
    "goconn_transport_can_write_eof": (c_int, [c_void_p]),
    "goconn_transport_close": (c_int, [c_void_p]),
    "goconn_transport_abort": (c_int, [c_void_p]),
    "goconn_transport_is_closing": (c_int, [c_void_p]),
    "goconn_transport_pause_reading": (c_int, [c_void_p]),
    "goconn_transport_resume_reading": (c_int, [c_void_p]),
    "goconn_transport_is_reading": (c_int, [c_void_p]),
    "goconn_transport_set_write_buffer_limits": (
        c_int,
        [c_void_p, c_int64, c_int64, c_void_p, c_size_t],
    ),
    "goconn_transport_get_write_buffer_limits": (
        c_int,
        [c_void_p, POINTER(c_int64), POINTER(c_int64)],
    ),
    "goconn_transport_get_write_buffer_size": (c_int, [c_void_p, POINTER(c_size_t)]),
    "goconn_transport_get_fd": (c_int, [c_void_p]),
    "goconn_ssl_options_init": (c_int, [POINTER(SSLOptions), c_uint]),
    "goconn_transport_get_tls_info": (c_int, [c_void_p, POINTER(TLSInfo)]),
    "goconn_transport_get_peer_certificate": (
        c_int,
        [c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)],
    ),
    "goconn_transport_get_resolutions": (
        c_int,
        [c_void_p, POINTER(POINTER(POINTER(Resolution))), POINTER(c_size_t)],
    ),
    "goconn_transport_get_attempts": (
        c_int,
        [c_void_p, POINTER(POINTER(POINTER(Attempt))), POINTER(c_size_t)],
    ),
}


def bind() -> ctypes.CDLL:
    """Load the library and declare every function's signature once."""
    lib = _lib.load()
    if not getattr(lib, "_goconn_bound", False):
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        lib._goconn_bound = True
    return lib
