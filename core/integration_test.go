package core_test

// Loopback integration tests of create_connection: echo, refusals and their
// aggregation, local_addr, sock adoption, cancellation and the factory.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/goconn/goconn/core"
	"golang.org/x/sys/unix"
)

func TestEcho(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		for _, host := range []string{"127.0.0.1", "localhost"} {
			port := echoServer(t)
			r := newRecorder(e)
			tr := e.connect(tcpOpts(host, port), r)

			peer, ok := tr.Peername()
			if !ok || peer.Repr() != fmt.Sprintf("('127.0.0.1', %d)", port) {
				t.Errorf("%s: peername %v %v", host, peer, ok)
			}
			local, ok := tr.Sockname()
			if !ok || local.Host != "127.0.0.1" || local.Port == 0 {
				t.Errorf("%s: sockname %v %v", host, local, ok)
			}
			// Host/port sockets are IPPROTO_TCP, so TCP_NODELAY is set (spec 6.3).
			if v, err := unix.GetsockoptInt(tr.FD(), unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
				t.Errorf("%s: TCP_NODELAY = %d, %v", host, v, err)
			}
			// (A localhost that also resolves to ::1 would add a refused
			// attempt first.)
			if a := tr.Attempts(); len(a) == 0 || a[len(a)-1].Outcome != core.AttemptWon || a[len(a)-1].Remote.Port != port {
				t.Errorf("%s: attempts %+v", host, a)
			}
			if tr.IsClosing() || !tr.IsReading() || !tr.CanWriteEOF() {
				t.Errorf("%s: fresh transport state wrong", host)
			}
			if low, high := tr.WriteBufferLimits(); low != 16384 || high != 65536 {
				t.Errorf("%s: limits (%d, %d)", host, low, high)
			}

			msg := pattern(100000)
			if err := tr.Write(msg[:10]); err != nil {
				t.Fatal(err)
			}
			if err := tr.Writelines([][]byte{msg[10:500], msg[500:]}); err != nil {
				t.Fatal(err)
			}
			if got := r.waitData(len(msg)); string(got) != string(msg) {
				t.Fatalf("%s: echoed data differs (%d bytes)", host, len(got))
			}

			tr.Close()
			if !tr.IsClosing() || tr.IsReading() {
				t.Errorf("%s: IsClosing/IsReading after Close", host)
			}
			tr.Close() // idempotent
			if err := r.waitLost(); err != nil {
				t.Errorf("%s: connection_lost(%v), want nil", host, err)
			}
			if got := r.Events(); got != "made data lost" {
				t.Errorf("%s: events %q", host, got)
			}
			// Cached addresses stay readable after close.
			if p2, ok := tr.Peername(); !ok || p2 != peer {
				t.Errorf("%s: peername after close %v", host, p2)
			}
		}
	})
}

func TestRefused(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		port := refusingPort4(t)
		res := e.fail(tcpOpts("127.0.0.1", port))
		want := fmt.Sprintf("[Errno 111] Connect call failed ('127.0.0.1', %d)", port)
		if res.Err.Error() != want {
			t.Errorf("got %q, want %q", res.Err, want)
		}
		if !errors.Is(res.Err, syscall.ECONNREFUSED) {
			t.Error("errors.Is(ECONNREFUSED) is false")
		}
		var oe *core.OSError
		if !errors.As(res.Err, &oe) || oe.Addr == nil || oe.Addr.Port != port {
			t.Errorf("got %#v", res.Err)
		}
		if len(res.Attempts) != 1 || res.Attempts[0].Outcome != core.AttemptRefused || res.Attempts[0].Errno != syscall.ECONNREFUSED {
			t.Errorf("attempts %+v", res.Attempts)
		}
	})
}

// TestRefusedMany: several refused addresses, aggregated as in spec 5.
func TestRefusedMany(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		p4 := refusingPort4(t)
		p6 := refusingPort6(t)
		text4 := fmt.Sprintf("[Errno 111] Connect call failed ('127.0.0.1', %d)", p4)
		text6 := fmt.Sprintf("[Errno 111] Connect call failed ('::1', %d, 0, 0)", p6)
		two := staticResolver{tcpInfo("127.0.0.1", p4), tcpInfo("::1", p6)}

		for _, delay := range []*float64{nil, f64(0.05)} {
			opts := core.Options{Host: str("multi.test"), Port: str("1"), Resolver: two, HappyEyeballsDelay: delay}
			res := e.fail(opts)
			if want := "Multiple exceptions: " + text4 + ", " + text6; res.Err.Error() != want {
				t.Errorf("delay %v: got %q\nwant %q", delay, res.Err, want)
			}
			var me *core.MultiError
			if !errors.As(res.Err, &me) || me.AllErrors || len(me.Errors) != 2 {
				t.Errorf("delay %v: got %#v", delay, res.Err)
			}
			if len(res.Attempts) != 2 {
				t.Errorf("delay %v: %d attempts", delay, len(res.Attempts))
			}

			opts.AllErrors = true
			res = e.fail(opts)
			if !errors.As(res.Err, &me) || !me.AllErrors || len(me.Errors) != 2 {
				t.Fatalf("delay %v: all_errors gave %#v", delay, res.Err)
			}
			if res.Err.Error() != "create_connection failed (2 sub-exceptions)" {
				t.Errorf("delay %v: got %q", delay, res.Err)
			}
			if me.Errors[0].Error() != text4 || me.Errors[1].Error() != text6 {
				t.Errorf("delay %v: sub-exceptions %q, %q", delay, me.Errors[0], me.Errors[1])
			}
			for _, sub := range me.Errors {
				if !errors.Is(sub, syscall.ECONNREFUSED) {
					t.Errorf("delay %v: %v is not ECONNREFUSED", delay, sub)
				}
			}
		}

		// All texts alike: the first error is raised as it is.
		same := staticResolver{tcpInfo("127.0.0.1", p4), tcpInfo("127.0.0.1", p4)}
		res := e.fail(core.Options{Host: str("same.test"), Port: str("1"), Resolver: same})
		var oe *core.OSError
		if !errors.As(res.Err, &oe) || res.Err.Error() != text4 || !errors.Is(res.Err, syscall.ECONNREFUSED) {
			t.Errorf("identical refusals gave %#v", res.Err)
		}
		if len(res.Attempts) != 2 {
			t.Errorf("%d attempts", len(res.Attempts))
		}

		// One error with all_errors is still a group.
		res = e.fail(core.Options{Host: str("127.0.0.1"), Port: str(strconv.Itoa(p4)), AllErrors: true})
		if res.Err.Error() != "create_connection failed (1 sub-exception)" {
			t.Errorf("got %q", res.Err)
		}
	})
}

func TestLocalAddr(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		t.Run("bind to port 0", func(t *testing.T) {
			ln, port := listen(t)
			opts := tcpOpts("127.0.0.1", port)
			opts.LocalAddr = &core.Endpoint{Host: str("127.0.0.1"), Port: str("0")}
			r := newRecorder(e)
			tr := e.connect(opts, r)
			c := accept(t, ln)
			local, ok := tr.Sockname()
			remote := c.RemoteAddr().(*net.TCPAddr)
			if !ok || local.Host != "127.0.0.1" || local.Port != remote.Port || local.Port == 0 {
				t.Errorf("sockname %v, peer sees %v", local, remote)
			}
			if a := tr.Attempts(); len(a) != 1 || !a[0].HasLocal || a[0].Local.Port != local.Port {
				t.Errorf("attempts %+v", a)
			}
			tr.Close()
			if err := r.waitLost(); err != nil {
				t.Error(err)
			}
		})

		t.Run("address in use", func(t *testing.T) {
			_, port := listen(t)
			_, busy := listen(t)
			opts := tcpOpts("127.0.0.1", port)
			opts.LocalAddr = &core.Endpoint{Host: str("127.0.0.1"), Port: str(strconv.Itoa(busy))}
			res := e.fail(opts)
			want := fmt.Sprintf("[Errno 98] error while attempting to bind on address ('127.0.0.1', %d): address already in use", busy)
			if res.Err.Error() != want {
				t.Errorf("got %q\nwant %q", res.Err, want)
			}
			if !errors.Is(res.Err, syscall.EADDRINUSE) {
				t.Error("errors.Is(EADDRINUSE) is false")
			}
		})

		t.Run("no local address of the family", func(t *testing.T) {
			_, port := listen(t)
			opts := tcpOpts("127.0.0.1", port)
			opts.LocalAddr = &core.Endpoint{Host: str("::1"), Port: str("0")}
			res := e.fail(opts)
			if want := "no matching local address with family=<AddressFamily.AF_INET: 2> found"; res.Err.Error() != want {
				t.Errorf("got %q, want %q", res.Err, want)
			}
			var oe *core.OSError
			if !errors.As(res.Err, &oe) || oe.Errno != 0 {
				t.Errorf("got %#v, want an OSError without errno", res.Err)
			}

			p6 := refusingPort6(t)
			opts = tcpOpts("::1", p6)
			opts.LocalAddr = &core.Endpoint{Host: str("127.0.0.1"), Port: str("0")}
			res = e.fail(opts)
			if want := "no matching local address with family=<AddressFamily.AF_INET6: 10> found"; res.Err.Error() != want {
				t.Errorf("got %q, want %q", res.Err, want)
			}
		})
	})
}

// TestAdoptSock: a connected descriptor made outside is adopted, made
// non-blocking, carries data, and is closed with the transport.
func TestAdoptSock(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		port := echoServer(t)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if nonblocking(t, fd) {
			t.Fatal("the test socket should start blocking")
		}

		r := newRecorder(e)
		var nbAtMade bool
		r.onMade = func(tr *core.Transport) { nbAtMade = nonblocking(t, tr.FD()) }
		tr := e.connect(core.Options{Sock: &fd}, r)
		if tr.FD() != fd {
			t.Errorf("transport fd %d, want %d", tr.FD(), fd)
		}
		if !nbAtMade {
			t.Error("the adopted socket was not made non-blocking")
		}
		if len(tr.Attempts()) != 0 {
			t.Errorf("attempts %+v for an adopted socket", tr.Attempts())
		}
		if peer, ok := tr.Peername(); !ok || peer.Port != port {
			t.Errorf("peername %v", peer)
		}

		msg := pattern(5000)
		if err := tr.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := r.waitData(len(msg)); string(got) != string(msg) {
			t.Fatal("echoed data differs")
		}
		tr.Close()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		// The descriptor is closed right after connection_lost returns, as
		// asyncio closes it in _call_connection_lost's finally. (If the
		// number was reused since, it names another file.)
		e.waitFor("the adopted descriptor to be closed", func() bool {
			var st2 unix.Stat_t
			err := unix.Fstat(fd, &st2)
			return err != nil || st2.Ino != st.Ino || st2.Dev != st.Dev
		})
	})
}

func nonblocking(t *testing.T, fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Errorf("fcntl: %v", err)
		return false
	}
	return fl&unix.O_NONBLOCK != 0
}

func TestAdoptRejected(t *testing.T) {
	e := newEnv(t, false)
	cb := core.Callbacks{
		Factory: func(*core.Transport) (core.Protocol, error) { t.Error("factory called"); return nil, nil },
		Done:    func(core.Result) { t.Error("done called") },
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_, err = core.OpenConnection(core.Options{Sock: &fd}, e.executor(), cb)
	var nse *core.NotStreamError
	if !errors.As(err, &nse) {
		t.Fatalf("got %v", err)
	}
	_, err = core.OpenConnection(core.Options{Sock: &fd, Host: str("h")}, e.executor(), cb)
	if err == nil || err.Error() != "host/port and sock can not be specified at the same time" {
		t.Fatalf("got %v", err)
	}
}

// hangingDialer's attempts wait until their context ends.
type hangingDialer struct{ started chan struct{} }

func (d hangingDialer) Dial(ctx context.Context, _ core.AddrInfo, _ []core.AddrInfo) core.AttemptResult {
	d.started <- struct{}{}
	<-ctx.Done()
	return core.AttemptResult{Cancelled: true}
}

func TestCancel(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		d := hangingDialer{started: make(chan struct{}, 8)}
		opts := core.Options{Host: str("127.0.0.1"), Port: str("9"), Dialer: d}
		p := e.start(opts, nil)
		e.waitFor("the attempt to start", func() bool { return len(d.started) > 0 })
		if !p.req.Cancel() {
			t.Fatal("Cancel returned false before the hand-over")
		}
		res := p.wait()
		if res.Err != core.ErrCancelled || res.Transport != nil {
			t.Fatalf("got %+v", res)
		}
		if len(res.Attempts) != 1 || res.Attempts[0].Outcome != core.AttemptCancelled {
			t.Errorf("attempts %+v", res.Attempts)
		}
		if p.req.Cancel() {
			t.Error("a second Cancel returned true")
		}
	})
}

func TestCancelAfterHandOver(t *testing.T) {
	e := newEnv(t, false)
	port := echoServer(t)
	r := newRecorder(e)
	p := e.start(tcpOpts("127.0.0.1", port), r)
	res := p.wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if p.req.Cancel() {
		t.Error("Cancel after the hand-over returned true")
	}
	res.Transport.Close()
	if err := r.waitLost(); err != nil {
		t.Error(err)
	}
}

func TestFactoryFails(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		for _, ferr := range []error{errors.New("boom"), nil} {
			ln, port := listen(t)
			done := make(chan core.Result, 2)
			cb := core.Callbacks{
				Factory: func(*core.Transport) (core.Protocol, error) { return nil, ferr },
				Done:    func(r core.Result) { done <- r; e.poke() },
			}
			opts := tcpOpts("127.0.0.1", port)
			opts.Resolver = staticResolver{tcpInfo("127.0.0.1", port)}
			if _, err := core.OpenConnection(opts, e.executor(), cb); err != nil {
				t.Fatal(err)
			}
			e.waitFor("on_done", func() bool { return len(done) > 0 })
			res := <-done
			want := ferr
			if want == nil {
				want = core.ErrFactoryFailed
			}
			if res.Err != want || res.Transport != nil {
				t.Errorf("got %+v, want %v", res, want)
			}
			// The connected socket was closed: the peer reads EOF.
			c := accept(t, ln)
			if b := readAll(t, c); len(b) != 0 {
				t.Errorf("peer read %q", b)
			}
		}
	})
}
