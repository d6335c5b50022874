package core

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func connectFailed(addr SockAddr) *OSError {
	return &OSError{Errno: syscall.ECONNREFUSED, Text: "Connect call failed " + addr.Repr(), Addr: &addr}
}

var (
	v4Addr = SockAddr{Family: unix.AF_INET, Host: "127.0.0.1", IP: netip.MustParseAddr("127.0.0.1"), Port: 1}
	v6Addr = SockAddr{Family: unix.AF_INET6, Host: "::1", IP: netip.MustParseAddr("::1"), Port: 1}
)

func TestSockAddrRepr(t *testing.T) {
	tests := []struct {
		addr SockAddr
		want string
	}{
		{v4Addr, "('127.0.0.1', 1)"},
		{v6Addr, "('::1', 1, 0, 0)"},
		{SockAddr{Family: unix.AF_INET, Host: "192.0.2.7", Port: 65535}, "('192.0.2.7', 65535)"},
		{SockAddr{Family: unix.AF_INET6, Host: "fe80::1%eth0", Port: 80, Flowinfo: 5, ScopeID: 2}, "('fe80::1%eth0', 80, 5, 2)"},
		{SockAddr{Family: unix.AF_UNIX, Path: "/tmp/sock"}, "'/tmp/sock'"},
		// Python's str repr: double quotes when the text holds a single quote.
		{SockAddr{Family: unix.AF_UNIX, Path: "it's"}, `"it's"`},
		{SockAddr{Family: unix.AF_UNIX, Path: `a'b"c`}, `'a\'b"c'`},
		{SockAddr{Family: unix.AF_UNIX, Path: "a\\b\n"}, `'a\\b\n'`},
		{SockAddr{}, "None"},
	}
	for _, tc := range tests {
		if got := tc.addr.Repr(); got != tc.want {
			t.Errorf("Repr(%+v) = %s, want %s", tc.addr, got, tc.want)
		}
		if got := tc.addr.String(); got != tc.want {
			t.Errorf("String(%+v) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

func TestFamilyRepr(t *testing.T) {
	tests := map[int]string{
		unix.AF_INET:   "<AddressFamily.AF_INET: 2>",
		unix.AF_INET6:  "<AddressFamily.AF_INET6: 10>",
		unix.AF_UNIX:   "<AddressFamily.AF_UNIX: 1>",
		unix.AF_UNSPEC: "<AddressFamily.AF_UNSPEC: 0>",
		12345:          "12345", // a plain int prints as itself (spec 2.8.4)
	}
	for fam, want := range tests {
		if got := FamilyRepr(fam); got != want {
			t.Errorf("FamilyRepr(%d) = %q, want %q", fam, got, want)
		}
	}
}

func TestOSErrorText(t *testing.T) {
	e := connectFailed(v4Addr)
	if got, want := e.Error(), "[Errno 111] Connect call failed ('127.0.0.1', 1)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(e, syscall.ECONNREFUSED) {
		t.Error("errors.Is(ECONNREFUSED) is false")
	}
	if got, want := connectFailed(v6Addr).Error(), "[Errno 111] Connect call failed ('::1', 1, 0, 0)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	bare := &OSError{Text: "no matching local address with family=" + FamilyRepr(unix.AF_INET6) + " found"}
	if got, want := bare.Error(), "no matching local address with family=<AddressFamily.AF_INET6: 10> found"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if bare.Unwrap() != nil {
		t.Error("an OSError without errno unwraps to nothing")
	}
	if got := (&GAIError{Code: EAI_NONAME, Text: "Name or service not known"}).Error(); got != "[Errno -2] Name or service not known" {
		t.Errorf("GAIError = %q", got)
	}
	if got := osErrorFrom(unix.EBADF).Error(); got != "[Errno 9] Bad file descriptor" {
		t.Errorf("osErrorFrom(EBADF) = %q", got)
	}
}

func TestAggregate(t *testing.T) {
	e4 := connectFailed(v4Addr)
	e6 := connectFailed(v6Addr)

	t.Run("one error is returned as it is", func(t *testing.T) {
		if got := Aggregate([]error{e4}, false); got != error(e4) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("identical texts give the first", func(t *testing.T) {
		dup := connectFailed(v4Addr)
		got := Aggregate([]error{e4, dup, connectFailed(v4Addr)}, false)
		if got != error(e4) {
			t.Errorf("got %#v, want the first error", got)
		}
	})
	t.Run("different texts give Multiple exceptions", func(t *testing.T) {
		got := Aggregate([]error{e4, e6}, false)
		want := "Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 1), " +
			"[Errno 111] Connect call failed ('::1', 1, 0, 0)"
		if got.Error() != want {
			t.Errorf("got %q\nwant %q", got, want)
		}
		var me *MultiError
		if !errors.As(got, &me) || me.AllErrors || len(me.Errors) != 2 || me.Errors[0] != error(e4) || me.Errors[1] != error(e6) {
			t.Errorf("got %#v", got)
		}
		// errno None: the aggregate is not itself ECONNREFUSED.
		if errnoOf(got) != 0 {
			t.Errorf("aggregate errno = %v, want none", errnoOf(got))
		}
	})
	t.Run("bind and family errors mix in", func(t *testing.T) {
		bind := &OSError{Errno: syscall.EADDRINUSE,
			Text: "error while attempting to bind on address ('127.0.0.1', 41445): address already in use"}
		fam := &OSError{Text: "no matching local address with family=<AddressFamily.AF_INET6: 10> found"}
		want := "Multiple exceptions: [Errno 98] error while attempting to bind on address ('127.0.0.1', 41445): " +
			"address already in use, no matching local address with family=<AddressFamily.AF_INET6: 10> found"
		if got := Aggregate([]error{bind, fam}, false).Error(); got != want {
			t.Errorf("got %q\nwant %q", got, want)
		}
	})
	t.Run("all_errors", func(t *testing.T) {
		got := Aggregate([]error{e4, e6}, true)
		var me *MultiError
		if !errors.As(got, &me) || !me.AllErrors || len(me.Errors) != 2 {
			t.Fatalf("got %#v", got)
		}
		if got.Error() != "create_connection failed (2 sub-exceptions)" {
			t.Errorf("got %q", got)
		}
		// Even a single error, or identical ones, make a group.
		one := Aggregate([]error{e4}, true)
		if !errors.As(one, &me) || len(me.Errors) != 1 || one.Error() != "create_connection failed (1 sub-exception)" {
			t.Errorf("got %#v %q", one, one)
		}
		same := Aggregate([]error{e4, connectFailed(v4Addr)}, true)
		if same.Error() != "create_connection failed (2 sub-exceptions)" {
			t.Errorf("got %q", same)
		}
	})
	t.Run("empty list", func(t *testing.T) {
		for _, all := range []bool{false, true} {
			got := Aggregate(nil, all)
			var te *TimeoutError
			if !errors.As(got, &te) || got.Error() != "create_connection failed" {
				t.Errorf("all_errors=%v: got %#v", all, got)
			}
		}
	})
}

func TestErrnoOf(t *testing.T) {
	if got := errnoOf(connectFailed(v4Addr)); got != syscall.ECONNREFUSED {
		t.Errorf("got %v", got)
	}
	if got := errnoOf(syscall.EPIPE); got != syscall.EPIPE {
		t.Errorf("got %v", got)
	}
	if got := errnoOf(errors.New("x")); got != 0 {
		t.Errorf("got %v", got)
	}
}
