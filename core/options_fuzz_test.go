package core

// Fuzz test of the option checks (options.go): Validate against asyncio's
// create_connection checks in asyncio's order, validateExtras, the TLS
// timeout checks, and the derived values (delay, interleave, seconds).

import (
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bits of the fuzz mask: which optional arguments are given.
const (
	optHost = 1 << iota
	optPort
	optTLS
	optServerHostname
	optHandshake
	optShutdown
	optSock
	optAddrInfos
	optHEDelay
	optInterleave
	optResolutionDelay
	optAttemptTimeout
	optConnectTimeout
	optKeepalive
)

// pyValidate is create_connection's argument checks, in asyncio's order
// (plus goconn's addr_infos, which stands for host/port).
func pyValidate(o *Options) string {
	ssl := o.TLS != nil
	switch {
	case o.ServerHostname != nil && !ssl:
		return "server_hostname is only meaningful with ssl"
	case o.ServerHostname == nil && ssl && (o.Host == nil || *o.Host == ""): // "if not host"
		return "You must set server_hostname when using ssl without a host"
	case o.SSLHandshakeTimeout != nil && !ssl:
		return "ssl_handshake_timeout is only meaningful with ssl"
	case o.SSLShutdownTimeout != nil && !ssl:
		return "ssl_shutdown_timeout is only meaningful with ssl"
	case o.Host != nil || o.Port != nil || o.AddrInfos != nil:
		if o.Sock != nil {
			return "host/port and sock can not be specified at the same time"
		}
	case o.Sock == nil:
		return "host and port was not specified and no sock specified"
	}
	return ""
}

// checkPyNumber: the number in a message reads back as the value (Python
// prints a whole number given as an int without ".0").
func checkPyNumber(t *testing.T, v float64, s string) {
	t.Helper()
	if math.IsNaN(v) {
		if s != "nan" {
			t.Fatalf("NaN printed as %q", s)
		}
		return
	}
	back, err := strconv.ParseFloat(s, 64)
	if err != nil || back != v {
		t.Fatalf("%v printed as %q, which reads back as %v (%v)", v, s, back, err)
	}
}

func FuzzOptions(f *testing.F) {
	f.Add(uint16(optHost|optPort), "example.com", "443", "", 0.0, 0.0, 0.25, 0.05, 1.0, 10.0, 1, []byte{}, int64(0), int64(0), 0)
	f.Add(uint16(optHost|optTLS), "", "", "", 60.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0, []byte{}, int64(0), int64(0), 0)
	f.Add(uint16(optTLS|optHandshake|optShutdown|optSock), "", "", "", -1.0, math.NaN(), 0.0, 0.0, 0.0, 0.0, 0, []byte{}, int64(0), int64(0), 0)
	f.Add(uint16(optServerHostname|optHandshake), "h", "", "sni", 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0, []byte{}, int64(0), int64(0), 0)
	f.Add(uint16(optAddrInfos|optAttemptTimeout|optConnectTimeout|optResolutionDelay), "", "", "", 0.0, 0.0, 0.0, -0.5, 1e-300, math.Inf(1), 0, []byte{0, 1, 2}, int64(0), int64(0), 0)
	f.Add(uint16(optHost|optKeepalive|optHEDelay|optInterleave), "h", "", "", 0.0, 0.0, math.NaN(), 0.0, 0.0, 0.0, -3, []byte{}, int64(-1), int64(5), 3)
	f.Add(uint16(0), "", "", "", 0.0, 0.0, 1e300, 0.0, 0.0, 0.0, 0, []byte{}, int64(0), int64(0), 0)
	f.Add(uint16(optPort|optHEDelay|optAttemptTimeout), "", "0", "", 0.0, 0.0, -1.0, 0.0, 1e-12, 0.0, 0, []byte{}, int64(0), int64(0), 0)
	f.Fuzz(func(t *testing.T, mask uint16, host, port, sni string, hs, ss, hed, rd, at, ct float64, inter int,
		fams []byte, kaIdle, kaIntv int64, kaCount int) {
		var o Options
		if mask&optHost != 0 {
			o.Host = &host
		}
		if mask&optPort != 0 {
			o.Port = &port
		}
		if mask&optTLS != 0 {
			o.TLS = &TLSOptions{}
		}
		if mask&optServerHostname != 0 {
			o.ServerHostname = &sni
		}
		if mask&optHandshake != 0 {
			o.SSLHandshakeTimeout = &hs
		}
		if mask&optShutdown != 0 {
			o.SSLShutdownTimeout = &ss
		}
		if mask&optSock != 0 {
			fd := 3
			o.Sock = &fd
		}
		if mask&optAddrInfos != 0 {
			o.AddrInfos = []AddrInfo{}
			for _, b := range fams {
				fam := []int{unix.AF_INET, unix.AF_INET6, unix.AF_UNIX, unix.AF_UNSPEC}[int(b)%4]
				o.AddrInfos = append(o.AddrInfos, AddrInfo{Family: fam})
			}
		}
		if mask&optHEDelay != 0 {
			o.HappyEyeballsDelay = &hed
		}
		if mask&optInterleave != 0 {
			o.Interleave = &inter
		}
		if mask&optResolutionDelay != 0 {
			o.ResolutionDelay = &rd
		}
		if mask&optAttemptTimeout != 0 {
			o.AttemptTimeout = &at
		}
		if mask&optConnectTimeout != 0 {
			o.ConnectTimeout = &ct
		}
		if mask&optKeepalive != 0 {
			o.Keepalive = &Keepalive{Idle: time.Duration(kaIdle), Interval: time.Duration(kaIntv), Count: kaCount}
		}

		// Validate: asyncio's ValueError, text for text.
		err := o.Validate()
		if want := pyValidate(&o); want != "" {
			var ve *ValueError
			if !errors.As(err, &ve) || err.Error() != want {
				t.Fatalf("Validate: %v, want ValueError %q", err, want)
			}
		} else if err != nil {
			t.Fatalf("Validate: %v, asyncio accepts", err)
		}

		// validateExtras: the first failing check, with its text.
		err = o.validateExtras()
		var want string
		switch {
		case o.AttemptTimeout != nil && !(at > 0):
			want = "attempt_timeout must be a positive number of seconds, got " + pyNumber(at)
			checkPyNumber(t, at, pyNumber(at))
		case o.ConnectTimeout != nil && !(ct > 0):
			want = "connect_timeout must be a positive number of seconds, got " + pyNumber(ct)
			checkPyNumber(t, ct, pyNumber(ct))
		case o.ResolutionDelay != nil && !(rd >= 0):
			want = "resolution_delay must be 0 or more seconds, got " + pyNumber(rd)
			checkPyNumber(t, rd, pyNumber(rd))
		case o.AddrInfos != nil && o.Sock != nil:
			want = "addr_infos and sock can not be specified at the same time"
		case o.AddrInfos != nil && func() bool {
			for _, ai := range o.AddrInfos {
				if ai.Family != unix.AF_INET && ai.Family != unix.AF_INET6 {
					return true
				}
			}
			return false
		}():
			want = "addr_infos must hold AF_INET or AF_INET6 addresses"
		case o.Keepalive != nil && (kaIdle < 0 || kaIntv < 0 || kaCount < 0):
			want = "keepalive settings must not be negative"
		}
		if want != "" {
			var ve *ValueError
			if !errors.As(err, &ve) || err.Error() != want {
				t.Fatalf("validateExtras: %v, want ValueError %q", err, want)
			}
		} else if err != nil {
			t.Fatalf("validateExtras: %v, want none", err)
		} else {
			// Accepted timeouts stay timeouts: a positive number of seconds
			// never becomes 0, which means "no timeout".
			for _, v := range []*float64{o.AttemptTimeout, o.ConnectTimeout} {
				if v != nil && seconds(v) <= 0 {
					t.Fatalf("a timeout of %v seconds became %v", *v, seconds(v))
				}
			}
			if o.ResolutionDelay != nil && seconds(o.ResolutionDelay) < 0 {
				t.Fatalf("resolution delay %v became %v", rd, seconds(o.ResolutionDelay))
			}
		}

		// The TLS timeouts: "<= 0" is refused (so NaN passes), the
		// defaults fill in, and the values come back as given.
		if o.TLS != nil {
			h, s, err := o.tlsTimeouts()
			switch {
			case o.SSLHandshakeTimeout != nil && hs <= 0:
				if err == nil || err.Error() != "ssl_handshake_timeout should be a positive number, got "+pyNumber(hs) {
					t.Fatalf("handshake timeout %v: %v", hs, err)
				}
				checkPyNumber(t, hs, pyNumber(hs))
			case o.SSLShutdownTimeout != nil && ss <= 0:
				if err == nil || err.Error() != "ssl_shutdown_timeout should be a positive number, got "+pyNumber(ss) {
					t.Fatalf("shutdown timeout %v: %v", ss, err)
				}
				checkPyNumber(t, ss, pyNumber(ss))
			case err != nil:
				t.Fatalf("tlsTimeouts: %v", err)
			default:
				wantH, wantS := DefaultHandshakeTimeout, DefaultShutdownTimeout
				if o.SSLHandshakeTimeout != nil {
					wantH = hs
				}
				if o.SSLShutdownTimeout != nil {
					wantS = ss
				}
				if !(h == wantH || h != h && wantH != wantH) || !(s == wantS || s != s && wantS != wantS) {
					t.Fatalf("tlsTimeouts = %v, %v; want %v, %v", h, s, wantH, wantS)
				}
				for _, v := range []float64{h, s} {
					if d := secondsToDuration(v); d <= 0 {
						t.Fatalf("TLS timeout %v seconds became %v", v, d)
					}
				}
			}
		}

		// The Happy Eyeballs delay: off when unset, NaN and negatives act
		// as 0, capped, never negative.
		d, on := o.delay()
		switch {
		case o.HappyEyeballsDelay == nil:
			if on || d != 0 {
				t.Fatalf("delay() = %v, %v without a delay", d, on)
			}
		case hed != hed || hed <= 0:
			if !on || d != 0 {
				t.Fatalf("delay(%v) = %v, %v; want 0", hed, d, on)
			}
		default:
			if !on || d < 0 || d > time.Duration(1e9*float64(time.Second)) {
				t.Fatalf("delay(%v) = %v, %v", hed, d, on)
			}
			if hed <= 1e9 && math.Abs(float64(d)-hed*1e9) > 1 {
				t.Fatalf("delay(%v) = %v", hed, d)
			}
		}
		// interleave: explicit, else 1 with Happy Eyeballs, else 0.
		wantI := 0
		switch {
		case o.Interleave != nil:
			wantI = inter
		case o.HappyEyeballsDelay != nil:
			wantI = 1
		}
		if got := o.interleave(); got != wantI {
			t.Fatalf("interleave() = %d, want %d", got, wantI)
		}
	})
}
