package core

import (
	"strconv"
	"time"
)

// NoDelay chooses whether TCP_NODELAY is set on the transport's socket.
type NoDelay int

const (
	// NoDelayAsyncio follows asyncio (spec 6.3): set it when the socket is
	// AF_INET or AF_INET6, SOCK_STREAM and IPPROTO_TCP. For an adopted socket
	// the protocol is what the kernel reports.
	NoDelayAsyncio NoDelay = iota
	NoDelayOn
	NoDelayOff
)

// Options are create_connection's arguments (CONTRACT "C API shape").
// Pointers are nil where Python passes None.
type Options struct {
	Host   *string
	Port   *string
	Family int
	Proto  int
	Flags  int

	Sock *int // an adopted socket's descriptor

	LocalAddr *Endpoint

	// TLS is non-nil when ssl is requested.
	TLS *TLSOptions

	ServerHostname      *string
	SSLHandshakeTimeout *float64
	SSLShutdownTimeout  *float64

	HappyEyeballsDelay *float64 // seconds; nil = off
	Interleave         *int     // nil = asyncio's default
	AllErrors          bool

	NoDelay NoDelay

	// Plumbing; nil means the system's.
	Resolver Resolver
	Dialer   Dialer
	Clock    Clock
}

// Validate runs the argument checks that asyncio makes before any network
// activity, in asyncio's order and with its messages (spec section 1).
// The sock= type checks run in OpenConnection, where the descriptor is read.
func (o *Options) Validate() error {
	ssl := o.TLS != nil
	if o.ServerHostname != nil && !ssl {
		return &ValueError{Text: "server_hostname is only meaningful with ssl"}
	}
	if o.ServerHostname == nil && ssl {
		if o.Host == nil || *o.Host == "" {
			return &ValueError{Text: "You must set server_hostname when using ssl without a host"}
		}
	}
	if o.SSLHandshakeTimeout != nil && !ssl {
		return &ValueError{Text: "ssl_handshake_timeout is only meaningful with ssl"}
	}
	if o.SSLShutdownTimeout != nil && !ssl {
		return &ValueError{Text: "ssl_shutdown_timeout is only meaningful with ssl"}
	}
	if o.Host != nil || o.Port != nil {
		if o.Sock != nil {
			return &ValueError{Text: "host/port and sock can not be specified at the same time"}
		}
	} else if o.Sock == nil {
		return &ValueError{Text: "host and port was not specified and no sock specified"}
	}
	return nil
}

// Default TLS timeouts, asyncio's constants.
const (
	DefaultHandshakeTimeout = 60.0
	DefaultShutdownTimeout  = 30.0
)

// tlsTimeouts checks the TLS timeouts as asyncio's SSLProtocol does, after
// the TCP connection is up (spec 1.11), and fills in the defaults.
func (o *Options) tlsTimeouts() (handshake, shutdown float64, err error) {
	handshake, shutdown = DefaultHandshakeTimeout, DefaultShutdownTimeout
	if o.SSLHandshakeTimeout != nil {
		if v := *o.SSLHandshakeTimeout; v <= 0 { // asyncio checks "<= 0", so NaN passes
			return 0, 0, &ValueError{Text: "ssl_handshake_timeout should be a positive number, got " + pyNumber(v)}
		}
		handshake = *o.SSLHandshakeTimeout
	}
	if o.SSLShutdownTimeout != nil {
		if v := *o.SSLShutdownTimeout; v <= 0 {
			return 0, 0, &ValueError{Text: "ssl_shutdown_timeout should be a positive number, got " + pyNumber(v)}
		}
		shutdown = *o.SSLShutdownTimeout
	}
	return handshake, shutdown, nil
}

// serverName is server_hostname, defaulting to host, and whether the host
// name is to be checked ("" turns the check off, and sends no SNI).
func (o *Options) serverName() (string, bool) {
	name := ""
	if o.ServerHostname != nil {
		name = *o.ServerHostname
	} else if o.Host != nil {
		name = *o.Host
	}
	return name, name != ""
}

// pyNumber prints a timeout as asyncio's f-string does for a whole number
// given as an int (0, -1) or any other float (0.5).
func pyNumber(v float64) string {
	if v == float64(int64(v)) && v > -1e15 && v < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return PyFloat(v)
}

// interleave is the First Address Family Count to use, or 0 for none:
// happy_eyeballs_delay alone implies 1, an explicit 0 turns it off.
func (o *Options) interleave() int {
	if o.Interleave != nil {
		return *o.Interleave
	}
	if o.HappyEyeballsDelay != nil {
		return 1
	}
	return 0
}

// delay converts the Happy Eyeballs delay; a negative delay acts as 0.
func (o *Options) delay() (time.Duration, bool) {
	if o.HappyEyeballsDelay == nil {
		return 0, false
	}
	d := *o.HappyEyeballsDelay
	if d != d || d < 0 { // NaN or negative
		d = 0
	}
	if d > 1e9 {
		d = 1e9
	}
	return time.Duration(d * float64(time.Second)), true
}
