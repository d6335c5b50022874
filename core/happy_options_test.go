package core

// The options beyond asyncio: the overall connect timeout, pre-resolved
// addresses, IP_BIND_ADDRESS_NO_PORT, TCP keepalive, and their checks.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const connectTimeoutText = "create_connection timed out after 0.3 seconds (connect_timeout)"

func checkConnectTimeout(t *testing.T, res Result) {
	t.Helper()
	var te *TimeoutError
	if !errors.As(res.Err, &te) || res.Err.Error() != connectTimeoutText {
		t.Fatalf("got %#v, want the connect_timeout TimeoutError", res.Err)
	}
	if res.Transport != nil || res.Protocol != nil {
		t.Errorf("a timed out request delivered %+v", res)
	}
}

// TestHappyConnectTimeoutResolution: the connect timeout ends the request
// while the names are being looked up.
func TestHappyConnectTimeoutResolution(t *testing.T) {
	for _, stage := range []string{"both lookups pending", "in the Resolution Delay", "one ordinary lookup"} {
		t.Run(stage, func(t *testing.T) {
			h := newHERequest(t)
			h.opts.ConnectTimeout = f64(0.3)
			var l4 *handLookup
			switch stage {
			case "one ordinary lookup":
				h.resolver.honorCtx = true // as the libc resolver does
				h.opts.ResolutionDelay = nil
				h.open()
				h.resolver.expectLookup(t, unix.AF_UNSPEC)
			default:
				h.opts.ResolutionDelay = f64(1) // longer than the connect timeout
				h.open()
				_, l4 = h.lookups()
				if stage == "in the Resolution Delay" {
					h.at(ms(100))
					l4.answer(v4(1))
				}
			}
			h.at(ms(299))
			h.notDone("0.299 s")
			h.at(ms(300))
			res := h.wait()
			checkConnectTimeout(t, res)
			if len(res.Attempts) != 0 || h.dialer.dialCount() != 0 {
				t.Errorf("%d attempts", h.dialer.dialCount())
			}
			h.at(ms(2000))
			h.noDial("after the timeout")
		})
	}
}

// TestHappyConnectTimeoutAttempts: the connect timeout ends the request
// while attempts are running; every socket is closed.
func TestHappyConnectTimeoutAttempts(t *testing.T) {
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.AddrInfos = []AddrInfo{v4(1), v4(2), v4(3)}
	h.opts.ConnectTimeout = f64(0.3)
	h.open()
	a1 := h.dial(p4(1), 0)
	h.at(ms(250))
	a2 := h.dial(p4(2), ms(250))
	h.at(ms(299))
	h.notDone("0.299 s")
	h.at(ms(300))
	res := h.wait()
	checkConnectTimeout(t, res)
	checkClosed(t, a1, a2)
	checkAttempts(t, res, []int{p4(1), p4(2)}, nil, AttemptCancelled, AttemptCancelled)
	h.at(ms(1000))
	h.noDial("after the timeout")
	if n := h.clock.pendingTimers(); n != 0 {
		t.Errorf("%d timers left running", n)
	}
}

// stallingServer accepts TCP connections on 127.0.0.1 and never speaks.
// Each accepted connection is sent on the channel.
func stallingServer(t *testing.T) (int, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	stopped := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-stopped
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	go func() {
		defer close(stopped)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, conns
}

func acceptConn(t *testing.T, conns chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no connection came")
	}
	return nil
}

// TestHappyConnectTimeoutTLS: a server that accepts and never answers the
// ClientHello; the connect timeout (fake clock) ends the handshake and the
// request, and the socket is closed.
func TestHappyConnectTimeoutTLS(t *testing.T) {
	port, conns := stallingServer(t)
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.Host, h.opts.Port = str("127.0.0.1"), str(strconv.Itoa(port))
	h.opts.Dialer = SystemDialer{}
	h.opts.TLS = &TLSOptions{VerifyNone: true}
	h.opts.ConnectTimeout = f64(0.3)
	h.open()
	c := acceptConn(t, conns)
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 0x16 {
		t.Fatalf("no ClientHello: %v %x", err, buf)
	}
	h.at(ms(299))
	h.notDone("0.299 s into the handshake")
	h.at(ms(300))
	res := h.wait()
	checkConnectTimeout(t, res)
	checkAttempts(t, res, []int{port}, nil, AttemptCancelled)
	if h.factories != 0 {
		t.Error("the protocol factory ran")
	}
	// The client closed its socket: the server reads the rest of the
	// ClientHello and then EOF.
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("server read: %v", err)
	}
}

// TestHappyConnectTimeoutAfterFactory: once the protocol factory ran, the
// connect timeout does nothing.
func TestHappyConnectTimeoutAfterFactory(t *testing.T) {
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.AddrInfos = []AddrInfo{v4(1)}
	h.opts.ConnectTimeout = f64(0.3)
	h.open()
	a := h.dial(p4(1), 0)
	h.at(ms(100))
	a.succeed()
	res := h.wait()
	checkWon(t, res, a)
	h.at(ms(1000))
	if res.Transport.IsClosing() || h.proto.wasLost() {
		t.Error("the connect timeout closed a delivered transport")
	}
	checkOpen(t, a)
	if n := h.clock.pendingTimers(); n != 0 {
		t.Errorf("%d timers left running (the connect timeout's should be stopped)", n)
	}
}

// TestHappyConnectTimeoutBeforeFactory: the timeout fires after an attempt
// won but before the protocol factory could run (the executor had not yet
// run the hand-over): the request ends with the TimeoutError, as a Cancel
// at that moment ends it with ErrCancelled, and the socket is closed.
func TestHappyConnectTimeoutBeforeFactory(t *testing.T) {
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.AddrInfos = []AddrInfo{v4(1)}
	h.opts.ConnectTimeout = f64(0.3)
	h.open()
	a := h.dial(p4(1), 0)
	h.at(ms(100))
	a.succeed()
	h.quiet.wait(t) // the hand-over is queued on the executor, not run
	if h.exec.queued() == 0 {
		t.Fatal("nothing queued after the winner")
	}
	h.clock.Advance(ms(300))
	h.quiet.wait(t)
	res := h.wait()
	checkConnectTimeout(t, res)
	if h.factories != 0 {
		t.Error("the protocol factory ran after the connect timeout")
	}
	checkClosed(t, a)
	checkAttempts(t, res, []int{p4(1)}, nil, AttemptCancelled)
}

// TestHappyAddrInfos: pre-resolved addresses are used as given, with no
// lookup, interleaved per the interleave option.
func TestHappyAddrInfos(t *testing.T) {
	given := []AddrInfo{v4(1), v4(2), v6(1), v6(2)}
	tests := []struct {
		name       string
		heDelay    *float64
		interleave *int
		want       []int
	}{
		{"happy eyeballs: interleave 1", f64(0.25), nil, []int{p4(1), p6(1), p4(2), p6(2)}},
		{"interleave 2", f64(0.25), intp(2), []int{p4(1), p4(2), p6(1), p6(2)}},
		{"interleave 0", f64(0.25), intp(0), []int{p4(1), p4(2), p6(1), p6(2)}},
		{"asyncio's default: as given", nil, nil, []int{p4(1), p4(2), p6(1), p6(2)}},
		{"interleave without a delay", nil, intp(1), []int{p4(1), p6(1), p4(2), p6(2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHERequest(t)
			h.resolver.forbid = true
			h.opts.Host, h.opts.Port = nil, nil
			h.opts.AddrInfos = append([]AddrInfo(nil), given...)
			h.opts.HappyEyeballsDelay, h.opts.Interleave = tc.heDelay, tc.interleave
			h.dialer.auto = func(port int) *dialOutcome {
				for _, ai := range given {
					if ai.Addr.Port == port {
						return &dialOutcome{err: refusedAt(ai)}
					}
				}
				return nil
			}
			h.open()
			res := h.wait()
			if got := attemptPorts(res.Attempts); !same(got, tc.want) {
				t.Errorf("attempt order %v, want %v", got, tc.want)
			}
			var me *MultiError
			if !errors.As(res.Err, &me) || len(me.Errors) != 4 {
				t.Errorf("got %v", res.Err)
			}
			if h.resolver.callCount() != 0 || len(res.Resolutions) != 0 {
				t.Errorf("%d lookups, resolutions %+v", h.resolver.callCount(), res.Resolutions)
			}
			// The caller's slice is left as it was.
			if !same(ports(h.opts.AddrInfos), ports(given)) {
				t.Errorf("AddrInfos reordered in place: %v", ports(h.opts.AddrInfos))
			}
		})
	}

	t.Run("win with a Resolution Delay set: still no lookup", func(t *testing.T) {
		h := newHERequest(t)
		h.resolver.forbid = true
		h.opts.AddrInfos = []AddrInfo{v6(1), v4(1)}
		h.open()
		a := h.dial(p6(1), 0)
		a.succeed()
		res := h.wait()
		checkWon(t, res, a)
	})

	t.Run("empty list", func(t *testing.T) {
		h := newHERequest(t)
		h.resolver.forbid = true
		h.opts.AddrInfos = []AddrInfo{}
		h.open()
		res := h.wait()
		var oe *OSError
		if !errors.As(res.Err, &oe) || oe.Errno != 0 || res.Err.Error() != "getaddrinfo() returned empty list" {
			t.Errorf("got %#v", res.Err)
		}
		if h.dialer.dialCount() != 0 {
			t.Error("an attempt started")
		}
	})
}

// noCallbacks are callbacks for requests that OpenConnection must reject.
func noCallbacks(t *testing.T) Callbacks {
	return Callbacks{
		Factory: func(*Transport) (Protocol, error) { t.Error("factory called"); return nil, nil },
		Done:    func(r Result) { t.Errorf("Done called with %+v", r) },
	}
}

// TestHappyAddrInfosRejected: addresses that are not AF_INET or AF_INET6,
// and addresses together with sock=, are ValueErrors from OpenConnection.
func TestHappyAddrInfosRejected(t *testing.T) {
	unixInfo := AddrInfo{Family: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: SockAddr{Family: unix.AF_UNIX, Path: "/tmp/x"}}
	_, err := OpenConnection(Options{AddrInfos: []AddrInfo{v4(1), unixInfo}, Resolver: newHandResolver(t)},
		newManualExecutor(), noCallbacks(t))
	var ve *ValueError
	if !errors.As(err, &ve) || err.Error() != "addr_infos must hold AF_INET or AF_INET6 addresses" {
		t.Errorf("AF_UNIX address: got %#v", err)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	_, err = OpenConnection(Options{AddrInfos: []AddrInfo{v4(1)}, Sock: &fds[0]}, newManualExecutor(), noCallbacks(t))
	if !errors.As(err, &ve) {
		t.Errorf("AddrInfos with sock: got %#v, want a ValueError", err)
	}
	if !fdOpen(fds[0]) || nonblockingFD(t, fds[0]) {
		t.Error("the rejected sock was changed")
	}
	o := Options{AddrInfos: []AddrInfo{v4(1)}, Sock: &fds[0]}
	if err := o.validateExtras(); err == nil || err.Error() != "addr_infos and sock can not be specified at the same time" {
		t.Errorf("validateExtras: %v", err)
	}
}

func nonblockingFD(t *testing.T, fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}

// TestHappyValidateExtras: the checks of the options beyond asyncio, with
// their messages, in order, from validateExtras and from OpenConnection.
func TestHappyValidateExtras(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		opts Options
		want string // "" for no error
	}{
		{"attempt_timeout 0", Options{AttemptTimeout: f64(0)}, "attempt_timeout must be a positive number of seconds, got 0"},
		{"attempt_timeout -1", Options{AttemptTimeout: f64(-1)}, "attempt_timeout must be a positive number of seconds, got -1"},
		{"attempt_timeout -0.5", Options{AttemptTimeout: f64(-0.5)}, "attempt_timeout must be a positive number of seconds, got -0.5"},
		{"attempt_timeout nan", Options{AttemptTimeout: f64(nan)}, "attempt_timeout must be a positive number of seconds, got nan"},
		{"attempt_timeout -inf", Options{AttemptTimeout: f64(-inf)}, "attempt_timeout must be a positive number of seconds, got -inf"},
		{"connect_timeout 0", Options{ConnectTimeout: f64(0)}, "connect_timeout must be a positive number of seconds, got 0"},
		{"connect_timeout -2.5", Options{ConnectTimeout: f64(-2.5)}, "connect_timeout must be a positive number of seconds, got -2.5"},
		{"connect_timeout nan", Options{ConnectTimeout: f64(nan)}, "connect_timeout must be a positive number of seconds, got nan"},
		{"attempt_timeout is checked first", Options{AttemptTimeout: f64(0), ConnectTimeout: f64(0)},
			"attempt_timeout must be a positive number of seconds, got 0"},
		{"resolution_delay -0.01", Options{ResolutionDelay: f64(-0.01)}, "resolution_delay must be 0 or more seconds, got -0.01"},
		{"resolution_delay -1", Options{ResolutionDelay: f64(-1)}, "resolution_delay must be 0 or more seconds, got -1"},
		{"resolution_delay nan", Options{ResolutionDelay: f64(nan)}, "resolution_delay must be 0 or more seconds, got nan"},
		{"keepalive idle", Options{Keepalive: &Keepalive{Idle: -time.Second}}, "keepalive settings must not be negative"},
		{"keepalive interval", Options{Keepalive: &Keepalive{Interval: -1}}, "keepalive settings must not be negative"},
		{"keepalive count", Options{Keepalive: &Keepalive{Count: -1}}, "keepalive settings must not be negative"},
		{"all fine", Options{AttemptTimeout: f64(0.001), ConnectTimeout: f64(inf), ResolutionDelay: f64(0),
			Keepalive: &Keepalive{}}, ""},
		{"resolution_delay 0.05", Options{ResolutionDelay: f64(0.05), Keepalive: &Keepalive{Idle: time.Second, Interval: time.Second, Count: 1}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			err := o.validateExtras()
			if tc.want == "" {
				if err != nil {
					t.Errorf("validateExtras: %v, want nil", err)
				}
				return
			}
			var ve *ValueError
			if !errors.As(err, &ve) || err.Error() != tc.want {
				t.Errorf("validateExtras: %#v, want %q", err, tc.want)
			}
			o.Host, o.Port, o.Resolver = str("dual.test"), str("443"), newHandResolver(t)
			req, err := OpenConnection(o, newManualExecutor(), noCallbacks(t))
			if req != nil || !errors.As(err, &ve) || err.Error() != tc.want {
				t.Errorf("OpenConnection: %v, %#v; want %q", req, err, tc.want)
			}
		})
	}
}

// realConnect opens a real loopback connection to a stalling server with
// the options changed by edit, and returns the transport.
func realConnect(t *testing.T, edit func(o *Options)) *Transport {
	t.Helper()
	port, conns := stallingServer(t)
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.Host, h.opts.Port = str("127.0.0.1"), str(strconv.Itoa(port))
	h.opts.Dialer, h.opts.Clock = nil, nil // SystemDialer, SystemClock
	edit(&h.opts)
	h.open()
	res := h.wait()
	if res.Err != nil || res.Transport == nil {
		t.Fatalf("connect: %v", res.Err)
	}
	acceptConn(t, conns)
	return res.Transport
}

func getsockopt(t *testing.T, fd, level, opt int) int {
	t.Helper()
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, opt, err)
	}
	return v
}

// freePort is a loopback port nobody listens on or is bound to right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestHappyBindNoPort: with local_addr port 0 and BindNoPort, the socket
// has IP_BIND_ADDRESS_NO_PORT set before the bind; not without BindNoPort,
// and not for a fixed local port.
func TestHappyBindNoPort(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bindNo    bool
		localPort string
		want      int
	}{
		{"BindNoPort, port 0", true, "0", 1},
		{"without BindNoPort", false, "0", 0},
		{"BindNoPort, fixed port", true, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lp := tc.localPort
			if lp == "" {
				lp = strconv.Itoa(freePort(t))
			}
			tr := realConnect(t, func(o *Options) {
				o.LocalAddr = &Endpoint{Host: str("127.0.0.1"), Port: str(lp)}
				o.BindNoPort = tc.bindNo
			})
			if got := getsockopt(t, tr.FD(), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT); got != tc.want {
				t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d, want %d", got, tc.want)
			}
			local, ok := tr.Sockname()
			if !ok || local.Host != "127.0.0.1" || local.Port == 0 || (tc.localPort == "" && strconv.Itoa(local.Port) != lp) {
				t.Errorf("sockname %v", local)
			}
			if a := tr.Attempts(); len(a) != 1 || !a[0].HasLocal || a[0].Local.Port != local.Port {
				t.Errorf("attempts %+v", a)
			}
		})
	}
}

// TestHappyKeepalive: SO_KEEPALIVE and the TCP_KEEP* settings on a real
// loopback connection.
func TestHappyKeepalive(t *testing.T) {
	fresh, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defIdle := getsockopt(t, fresh, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	defIntvl := getsockopt(t, fresh, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	defCnt := getsockopt(t, fresh, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	unix.Close(fresh)

	for _, tc := range []struct {
		name                 string
		ka                   *Keepalive
		on, idle, intvl, cnt int
	}{
		{"off by default", nil, 0, defIdle, defIntvl, defCnt},
		{"all set", &Keepalive{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 4}, 1, 30, 5, 4},
		{"zero fields keep the system's", &Keepalive{}, 1, defIdle, defIntvl, defCnt},
		{"idle only", &Keepalive{Idle: 2 * time.Minute}, 1, 120, defIntvl, defCnt},
		{"under a second rounds up to 1", &Keepalive{Idle: 500 * time.Millisecond, Interval: time.Millisecond}, 1, 1, 1, defCnt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := realConnect(t, func(o *Options) { o.Keepalive = tc.ka })
			fd := tr.FD()
			got := fmt.Sprint(getsockopt(t, fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0,
				getsockopt(t, fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
				getsockopt(t, fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL),
				getsockopt(t, fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT))
			want := fmt.Sprint(tc.on != 0, tc.idle, tc.intvl, tc.cnt)
			if got != want {
				t.Errorf("keepalive, idle, interval, count = %s, want %s", got, want)
			}
		})
	}
}

// TestHappyAttemptTimeoutAggregate: through OpenConnection, attempts that
// all time out give asyncio's aggregate of their "[Errno 110] Connect call
// failed" errors, and each hung attempt's socket is closed.
func TestHappyAttemptTimeoutAggregate(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all_errors=%v", all), func(t *testing.T) {
			h := newHERequest(t)
			h.resolver.forbid = true
			h.opts.AddrInfos = []AddrInfo{v4(1), v6(1)}
			h.opts.HappyEyeballsDelay = nil // sequential: only the timeout moves on
			h.opts.AttemptTimeout = f64(1.0)
			h.opts.AllErrors = all
			h.open()
			a1 := h.dial(p4(1), 0)
			h.at(ms(999))
			h.noDial("0.999 s")
			h.at(ms(1000))
			a2 := h.dial(p6(1), ms(1000))
			h.at(ms(2000))
			res := h.wait()
			checkClosed(t, a1, a2)
			checkAttempts(t, res, []int{p4(1), p6(1)}, []time.Duration{0, ms(1000)}, AttemptTimedOut, AttemptTimedOut)
			text1 := "[Errno 110] Connect call failed ('192.0.2.1', 41)"
			text2 := "[Errno 110] Connect call failed ('2001:db8::1', 61, 0, 0)"
			var me *MultiError
			if !errors.As(res.Err, &me) || len(me.Errors) != 2 || me.AllErrors != all {
				t.Fatalf("got %#v", res.Err)
			}
			if all {
				if res.Err.Error() != "create_connection failed (2 sub-exceptions)" {
					t.Errorf("got %q", res.Err)
				}
			} else if want := "Multiple exceptions: " + text1 + ", " + text2; res.Err.Error() != want {
				t.Errorf("got %q\nwant %q", res.Err, want)
			}
			for i, e := range me.Errors {
				if !errors.Is(e, unix.ETIMEDOUT) || e.Error() != []string{text1, text2}[i] {
					t.Errorf("sub-error %d: %v", i, e)
				}
			}
		})
	}
}
