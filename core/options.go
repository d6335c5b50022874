package core

import (
	"strconv"
	"time"

	"golang.org/x/sys/unix"
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

	// Beyond asyncio (each opt-in; nil or zero leaves asyncio's behaviour):

	// ResolutionDelay turns on RFC 8305 asynchronous resolution: AAAA and
	// A are looked up in parallel, and after an A answer the race waits this
	// long (seconds; the RFC suggests 0.05) for AAAA before it starts.
	ResolutionDelay *float64
	// AttemptTimeout gives up on one connection attempt after this many
	// seconds (kept apart from the Happy Eyeballs delay).
	AttemptTimeout *float64
	// ConnectTimeout ends the whole request after this many seconds:
	// resolution, attempts and the TLS handshake.
	ConnectTimeout *float64
	// AddrInfos are pre-resolved addresses: no lookup is made.
	AddrInfos []AddrInfo
	// BindNoPort sets IP_BIND_ADDRESS_NO_PORT when local_addr has port 0,
	// so the port is chosen at connect time and ephemeral ports go further.
	BindNoPort bool
	// Keepalive turns TCP keepalive on, with these settings.
	Keepalive *Keepalive
	// Trace, when set, is told of every lookup and attempt as it starts and
	// ends, through the executor and always before Done.
	Trace func(TraceEvent)

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
	if o.Host != nil || o.Port != nil || o.AddrInfos != nil {
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

// Keepalive are TCP keepalive settings; zero fields keep the system's.
type Keepalive struct {
	Idle     time.Duration // TCP_KEEPIDLE
	Interval time.Duration // TCP_KEEPINTVL
	Count    int           // TCP_KEEPCNT
}

// validateExtras checks the options beyond asyncio's.
func (o *Options) validateExtras() error {
	positive := func(name string, v *float64) error {
		if v != nil && !(*v > 0) {
			return &ValueError{Text: name + " must be a positive number of seconds, got " + pyNumber(*v)}
		}
		return nil
	}
	if err := positive("attempt_timeout", o.AttemptTimeout); err != nil {
		return err
	}
	if err := positive("connect_timeout", o.ConnectTimeout); err != nil {
		return err
	}
	if o.ResolutionDelay != nil && !(*o.ResolutionDelay >= 0) {
		return &ValueError{Text: "resolution_delay must be 0 or more seconds, got " + pyNumber(*o.ResolutionDelay)}
	}
	if o.AddrInfos != nil {
		if o.Sock != nil {
			return &ValueError{Text: "addr_infos and sock can not be specified at the same time"}
		}
		for _, ai := range o.AddrInfos {
			if ai.Family != unix.AF_INET && ai.Family != unix.AF_INET6 {
				return &ValueError{Text: "addr_infos must hold AF_INET or AF_INET6 addresses"}
			}
		}
	}
	if k := o.Keepalive; k != nil && (k.Idle < 0 || k.Interval < 0 || k.Count < 0) {
		return &ValueError{Text: "keepalive settings must not be negative"}
	}
	return nil
}

// seconds converts an optional number of seconds, 0 when unset.
func seconds(v *float64) time.Duration {
	if v == nil {
		return 0
	}
	return secondsToDuration(*v)
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
