package core

import (
	"errors"
	"math"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func str(s string) *string   { return &s }
func f64(f float64) *float64 { return &f }
func intp(i int) *int        { return &i }
func i64(i int64) *int64     { return &i }
func fdp(fd int) *int        { return &fd }

// TestValidateMessages checks every message of spec section 1 and the order
// of the checks: the first failing check wins.
func TestValidateMessages(t *testing.T) {
	ssl := &TLSOptions{}
	tests := []struct {
		name string
		opts Options
		want string // a ValueError text; "" for no error
	}{
		// 1.1
		{"server_hostname without ssl", Options{Host: str("h"), Port: str("1"), ServerHostname: str("x")},
			"server_hostname is only meaningful with ssl"},
		{"empty server_hostname without ssl", Options{Host: str("h"), Port: str("1"), ServerHostname: str("")},
			"server_hostname is only meaningful with ssl"},
		// 1.2
		{"ssl without host", Options{Port: str("1"), TLS: ssl},
			"You must set server_hostname when using ssl without a host"},
		{"ssl with empty host", Options{Host: str(""), Port: str("1"), TLS: ssl},
			"You must set server_hostname when using ssl without a host"},
		{"ssl with sock and no host", Options{Sock: fdp(3), TLS: ssl},
			"You must set server_hostname when using ssl without a host"},
		// 1.3
		{"handshake timeout without ssl", Options{Host: str("h"), Port: str("1"), SSLHandshakeTimeout: f64(1)},
			"ssl_handshake_timeout is only meaningful with ssl"},
		// 1.4
		{"shutdown timeout without ssl", Options{Host: str("h"), Port: str("1"), SSLShutdownTimeout: f64(1)},
			"ssl_shutdown_timeout is only meaningful with ssl"},
		{"both timeouts: handshake first", Options{Host: str("h"), SSLHandshakeTimeout: f64(1), SSLShutdownTimeout: f64(1)},
			"ssl_handshake_timeout is only meaningful with ssl"},
		// 1.7
		{"host and sock", Options{Host: str("h"), Sock: fdp(3)},
			"host/port and sock can not be specified at the same time"},
		{"port and sock", Options{Port: str("1"), Sock: fdp(3)},
			"host/port and sock can not be specified at the same time"},
		{"host, port and sock", Options{Host: str("h"), Port: str("1"), Sock: fdp(3)},
			"host/port and sock can not be specified at the same time"},
		// 1.8
		{"nothing at all", Options{},
			"host and port was not specified and no sock specified"},
		// 1.12: server_hostname error wins over the timeout error.
		{"1.12", Options{Host: str("h"), Port: str("1"), SSLHandshakeTimeout: f64(1), ServerHostname: str("x")},
			"server_hostname is only meaningful with ssl"},
		// More ordering: each earlier check wins over every later one.
		{"server_hostname before sock checks", Options{ServerHostname: str("x")},
			"server_hostname is only meaningful with ssl"},
		{"ssl host check before timeouts and sock", Options{Sock: fdp(3), Host: str(""), TLS: ssl, SSLShutdownTimeout: f64(1)},
			"You must set server_hostname when using ssl without a host"},
		{"timeout before host/sock", Options{Host: str("h"), Sock: fdp(3), SSLShutdownTimeout: f64(1)},
			"ssl_shutdown_timeout is only meaningful with ssl"},
		{"timeout before missing endpoint", Options{SSLHandshakeTimeout: f64(0)},
			"ssl_handshake_timeout is only meaningful with ssl"},
		{"host/sock before TLS refusal", Options{Host: str("h"), Sock: fdp(3), TLS: ssl},
			"host/port and sock can not be specified at the same time"},
		// Valid plain-TCP requests.
		{"host and port", Options{Host: str("h"), Port: str("1")}, ""},
		{"port only", Options{Port: str("1")}, ""},
		{"host only", Options{Host: str("127.0.0.1")}, ""},
		{"sock only", Options{Sock: fdp(3)}, ""},
		{"happy eyeballs and interleave are not validated", Options{Host: str("h"), HappyEyeballsDelay: f64(-1), Interleave: intp(-5)}, ""},
	}
	for _, tc := range tests {
		err := tc.opts.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tc.name, err)
			}
			continue
		}
		var ve *ValueError
		if !errors.As(err, &ve) {
			t.Errorf("%s: got %#v, want ValueError %q", tc.name, err, tc.want)
			continue
		}
		if ve.Error() != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, ve.Error(), tc.want)
		}
	}
}

// TestValidateTLSAccepted: a valid TLS request passes every asyncio check.
func TestValidateTLSAccepted(t *testing.T) {
	for _, o := range []Options{
		{Host: str("h"), Port: str("443"), TLS: &TLSOptions{}},
		{Sock: fdp(3), TLS: &TLSOptions{}, ServerHostname: str("h")},
		{Host: str("h"), TLS: &TLSOptions{}, ServerHostname: str(""), SSLHandshakeTimeout: f64(1), SSLShutdownTimeout: f64(1)},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: got %v, want nil", o, err)
		}
	}
}

// TestOpenConnectionValidates: argument errors come back from
// OpenConnection itself, and then no callback ever runs.
func TestOpenConnectionValidates(t *testing.T) {
	cb := Callbacks{
		Factory: func(*Transport) (Protocol, error) { t.Error("factory called"); return nil, nil },
		Done:    func(Result) { t.Error("done called") },
	}
	req, err := OpenConnection(Options{}, NewDirectExecutor(), cb)
	if req != nil || err == nil || err.Error() != "host and port was not specified and no sock specified" {
		t.Fatalf("got %v, %v", req, err)
	}
	req, err = OpenConnection(Options{Host: str("127.0.0.1"), Port: str("1")}, NewDirectExecutor(), cb)
	if req != nil || err == nil || err.Error() != "no resolver configured" {
		t.Fatalf("got %v, %v", req, err)
	}
}

func TestInterleaveAndDelayOptions(t *testing.T) {
	tests := []struct {
		delay      *float64
		interleave *int
		wantFAFC   int
	}{
		{nil, nil, 0},
		{f64(0.25), nil, 1}, // happy_eyeballs_delay alone implies interleave=1
		{f64(0.25), intp(0), 0},
		{nil, intp(2), 2}, // interleave alone reorders too
		{f64(0.25), intp(3), 3},
	}
	for _, tc := range tests {
		o := Options{HappyEyeballsDelay: tc.delay, Interleave: tc.interleave}
		if got := o.interleave(); got != tc.wantFAFC {
			t.Errorf("delay=%v interleave=%v: FAFC %d, want %d", tc.delay, tc.interleave, got, tc.wantFAFC)
		}
	}

	delays := []struct {
		in        *float64
		want      time.Duration
		staggered bool
	}{
		{nil, 0, false},
		{f64(0.25), 250 * time.Millisecond, true},
		{f64(0), 0, true},
		{f64(-1), 0, true}, // a negative delay behaves like 0
		{f64(math.NaN()), 0, true},
		{f64(math.Inf(1)), time.Duration(1e9 * float64(time.Second)), true},
	}
	for _, tc := range delays {
		o := Options{HappyEyeballsDelay: tc.in}
		d, s := o.delay()
		if d != tc.want || s != tc.staggered {
			t.Errorf("delay(%v) = %v, %v; want %v, %v", tc.in, d, s, tc.want, tc.staggered)
		}
	}
}

// fdOpen reports whether fd is an open descriptor.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// unusedFD finds a descriptor number that is not open.
func unusedFD(t *testing.T) int {
	for fd := 100000; fd > 1000; fd -= 997 {
		if !fdOpen(fd) {
			return fd
		}
	}
	t.Fatal("no unused descriptor number found")
	return -1
}

// TestSockChecks: OpenConnection's checks of a sock= descriptor. A rejected
// descriptor stays open and belongs to the caller.
func TestSockChecks(t *testing.T) {
	cb := Callbacks{
		Factory: func(*Transport) (Protocol, error) { t.Error("factory called"); return nil, nil },
		Done:    func(Result) { t.Error("done called") },
	}
	open := func(fd int) error {
		t.Helper()
		req, err := OpenConnection(Options{Sock: &fd}, NewDirectExecutor(), cb)
		if req != nil {
			t.Errorf("fd %d: got a request", fd)
		}
		return err
	}

	t.Run("closed descriptor", func(t *testing.T) {
		for _, fd := range []int{unusedFD(t), -1} {
			err := open(fd)
			var oe *OSError
			if !errors.As(err, &oe) || oe.Errno != syscall.EBADF || !errors.Is(err, syscall.EBADF) {
				t.Fatalf("fd %d: got %#v, want OSError EBADF", fd, err)
			}
			if got := err.Error(); got != "[Errno 9] Bad file descriptor" {
				t.Errorf("fd %d: text %q", fd, got)
			}
		}
	})

	t.Run("UDP socket", func(t *testing.T) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		err = open(fd)
		var nse *NotStreamError
		if !errors.As(err, &nse) || nse.FD != fd || nse.Type != unix.SOCK_DGRAM {
			t.Fatalf("got %#v, want NotStreamError", err)
		}
		if !fdOpen(fd) {
			t.Error("the rejected socket was closed")
		}
	})

	t.Run("listening socket", func(t *testing.T) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 1); err != nil {
			t.Fatal(err)
		}
		err = open(fd)
		var lse *ListeningSocketError
		if !errors.As(err, &lse) || lse.FD != fd {
			t.Fatalf("got %#v, want ListeningSocketError", err)
		}
		if !fdOpen(fd) {
			t.Error("the rejected socket was closed")
		}
	})

	t.Run("not a socket", func(t *testing.T) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		err := open(p[0])
		var oe *OSError
		if !errors.As(err, &oe) || oe.Errno != syscall.ENOTSOCK {
			t.Fatalf("got %#v, want OSError ENOTSOCK", err)
		}
		if got := err.Error(); got != "[Errno 88] Socket operation on non-socket" {
			t.Errorf("text %q", got)
		}
		if !fdOpen(p[0]) {
			t.Error("the rejected pipe was closed")
		}
	})

	t.Run("stream sockets pass", func(t *testing.T) {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_UNIX} {
			fd, err := unix.Socket(fam, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			a, err := checkAdoptable(fd)
			if err != nil {
				t.Errorf("family %d: %v", fam, err)
			} else if a.fd != fd || a.family != fam || a.sockType != unix.SOCK_STREAM {
				t.Errorf("family %d: got %+v", fam, a)
			}
			unix.Close(fd)
		}
	})
}
