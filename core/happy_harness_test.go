package core

// A harness for the RFC 8305 tests: OpenConnection against the fake clock,
// the fake dialer, a resolver whose answers the test releases by hand, and
// an executor whose callbacks run only when the test runs them.

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// v4 is the i-th IPv4 test address, 192.0.2.i port 40+i; v6 is the i-th
// IPv6 one, 2001:db8::i port 60+i. The fake dialer knows an attempt by its
// port, so p4(i) and p6(i) name the attempts.
func v4(i int) AddrInfo { return testInfo(fmt.Sprintf("192.0.2.%d", i), p4(i)) }
func v6(i int) AddrInfo { return testInfo(fmt.Sprintf("2001:db8::%d", i), p6(i)) }
func p4(i int) int      { return 40 + i }
func p6(i int) int      { return 60 + i }

func testInfo(host string, port int) AddrInfo {
	ip := netip.MustParseAddr(host)
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	return AddrInfo{Family: fam, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
		Addr: SockAddr{Family: fam, Host: host, IP: ip, Port: port}}
}

// ports lists the ports of addresses: their names in these tests.
func ports(infos []AddrInfo) []int {
	var p []int
	for _, ai := range infos {
		p = append(p, ai.Addr.Port)
	}
	return p
}

func famName(f int) string {
	switch f {
	case unix.AF_INET:
		return "v4"
	case unix.AF_INET6:
		return "v6"
	case unix.AF_UNSPEC:
		return "unspec"
	}
	return fmt.Sprint(f)
}

// eventText is a trace event as one comparable line.
func eventText(ev TraceEvent) string {
	switch ev.Kind {
	case TraceResolveStart:
		return fmt.Sprintf("%v resolve-start %s", ev.Time, famName(ev.Resolution.Family))
	case TraceResolveEnd:
		r := ev.Resolution
		return fmt.Sprintf("%v resolve-end %s n=%d err=%v", ev.Time, famName(r.Family), r.Count, r.Err)
	case TraceAttemptStart:
		return fmt.Sprintf("%v attempt-start #%d %d", ev.Time, ev.Attempt.Index, ev.Attempt.Remote.Port)
	case TraceAttemptEnd:
		a := ev.Attempt
		return fmt.Sprintf("%v attempt-end #%d %d %s errno=%d", ev.Time, a.Index, a.Remote.Port, a.Outcome, int(a.Errno))
	}
	return fmt.Sprintf("%v kind %d", ev.Time, ev.Kind)
}

// nopProtocol is a protocol that records only connection_lost.
type nopProtocol struct {
	mu   sync.Mutex
	made bool
	lost bool
}

func (p *nopProtocol) ConnectionMade(*Transport) { p.mu.Lock(); p.made = true; p.mu.Unlock() }
func (p *nopProtocol) DataReceived([]byte)       {}
func (p *nopProtocol) EOFReceived() bool         { return false }
func (p *nopProtocol) ConnectionLost(error)      { p.mu.Lock(); p.lost = true; p.mu.Unlock() }
func (p *nopProtocol) PauseWriting()             {}
func (p *nopProtocol) ResumeWriting()            {}

func (p *nopProtocol) wasLost() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// heRequest is one OpenConnection call under test.
type heRequest struct {
	t        *testing.T
	clock    *fakeClock
	dialer   *fakeDialer
	resolver *handResolver
	exec     *manualExecutor
	quiet    *quietWatch
	opts     Options
	req      *Request
	proto    *nopProtocol

	mu        sync.Mutex
	log       []string // trace events and "done", in the order the callbacks ran
	results   []Result
	factories int
}

// newHERequest prepares a request for "dual.test" port 443 with a
// Resolution Delay of 0.05 s and a Happy Eyeballs delay of 0.25 s.
func newHERequest(t *testing.T) *heRequest {
	clock := newFakeClock()
	h := &heRequest{t: t, clock: clock, dialer: newFakeDialer(t, clock), resolver: newHandResolver(t),
		exec: newManualExecutor(), quiet: newQuietWatch(), proto: &nopProtocol{}}
	h.opts = Options{Host: str("dual.test"), Port: str("443"),
		HappyEyeballsDelay: f64(0.25), ResolutionDelay: f64(0.05),
		Resolver: h.resolver, Dialer: h.dialer, Clock: h.clock, Trace: h.trace}
	t.Cleanup(func() {
		h.mu.Lock()
		res := h.results
		h.mu.Unlock()
		for _, r := range res {
			if r.Transport != nil {
				r.Transport.Abort()
			}
		}
		h.exec.runPending()
	})
	return h
}

func (h *heRequest) trace(ev TraceEvent) {
	if !h.exec.inTask.Load() {
		h.t.Errorf("trace event %q delivered outside the executor", eventText(ev))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.results) > 0 {
		h.t.Errorf("trace event %q delivered after Done", eventText(ev))
	}
	h.log = append(h.log, eventText(ev))
}

func (h *heRequest) open() {
	h.t.Helper()
	req, err := OpenConnection(h.opts, h.exec, Callbacks{
		Factory: func(*Transport) (Protocol, error) {
			h.mu.Lock()
			h.factories++
			h.mu.Unlock()
			return h.proto, nil
		},
		Done: func(r Result) {
			if !h.exec.inTask.Load() {
				h.t.Error("Done called outside the executor")
			}
			h.mu.Lock()
			h.results = append(h.results, r)
			h.log = append(h.log, "done")
			h.mu.Unlock()
		},
	})
	if err != nil {
		h.t.Fatalf("OpenConnection: %v", err)
	}
	h.req = req
}

// settle waits until the library is quiet, then runs the callbacks it
// posted.
func (h *heRequest) settle() {
	h.t.Helper()
	h.quiet.wait(h.t)
	h.exec.runPending()
}

// at settles (so every timer the library was about to arm is armed), moves
// the fake clock to the absolute time d and settles again.
func (h *heRequest) at(d time.Duration) {
	h.t.Helper()
	h.settle()
	h.clock.Advance(d)
	h.settle()
}

func (h *heRequest) done() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.results) > 0
}

// notDone checks, once the library is quiet, that Done has not come and
// no attempt is waiting to be seen.
func (h *heRequest) notDone(when string) {
	h.t.Helper()
	h.settle()
	if h.done() {
		h.t.Fatalf("%s: Done came early: %+v", when, h.results[0])
	}
}

// wait runs callbacks until Done came, and returns its Result.
func (h *heRequest) wait() Result {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.exec.runPending()
		h.mu.Lock()
		if n := len(h.results); n > 0 {
			res := h.results[0]
			h.mu.Unlock()
			if n != 1 {
				h.t.Errorf("Done called %d times", n)
			}
			return res
		}
		h.mu.Unlock()
		select {
		case <-h.exec.posted:
		case <-deadline:
			h.t.Fatal("Done never came")
		}
	}
}

// dial waits for the attempt to the address with this port and checks the
// fake time at which it started.
func (h *heRequest) dial(port int, at time.Duration) *fakeAttempt {
	h.t.Helper()
	a := h.dialer.expectDial(h.t, port)
	if a.at != at {
		h.t.Errorf("attempt to port %d started at %v, want %v", port, a.at, at)
	}
	return a
}

// noDial checks, once the library is quiet, that no attempt started.
func (h *heRequest) noDial(when string) {
	h.t.Helper()
	h.settle()
	h.dialer.expectNoDial(h.t, when)
}

// traceLog is the trace events and "done" in the order they were delivered.
func (h *heRequest) traceLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// attemptPorts lists the remote ports of a trace's attempts, in start order.
func attemptPorts(as []Attempt) []int {
	var p []int
	for _, a := range as {
		p = append(p, a.Remote.Port)
	}
	return p
}

func attemptOutcomes(as []Attempt) []AttemptOutcome {
	var o []AttemptOutcome
	for _, a := range as {
		o = append(o, a.Outcome)
	}
	return o
}

func attemptStarts(as []Attempt) []time.Duration {
	var s []time.Duration
	for _, a := range as {
		s = append(s, a.Start)
	}
	return s
}

func same[T any](a, b []T) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// refusedAt and failedAt are the errors fake attempts end with.
func refusedAt(ai AddrInfo) error {
	a := ai.Addr
	return &OSError{Errno: unix.ECONNREFUSED, Text: "Connect call failed " + a.Repr(), Addr: &a}
}

func failedAt(ai AddrInfo, errno unix.Errno) error {
	a := ai.Addr
	return &OSError{Errno: errno, Text: "Connect call failed " + a.Repr(), Addr: &a}
}

// nameErr is a getaddrinfo failure.
func nameErr(text string) error { return &GAIError{Code: EAI_NONAME, Text: text} }
