package core

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Asynchronous per-family resolution, RFC 8305 section 3 (opt-in with a
// resolution delay): the AAAA and A lookups run in parallel. Attempts start
// on the first AAAA answer; if the A answer comes first, they start after
// the Resolution Delay unless AAAA arrives meanwhile. An answer that comes
// later joins the race (runRace merges it into the addresses not yet tried).

type familyAnswer struct {
	family int
	infos  []AddrInfo
	err    error
}

func (a *familyAnswer) usable() bool { return a != nil && a.err == nil && len(a.infos) > 0 }

// resolveHappyEyeballs returns the addresses to start with and, when one
// family is still being looked up, a channel that brings its addresses
// (and is then closed). fafc interleaves the first list when both families
// are in it.
func resolveHappyEyeballs(ctx context.Context, r Resolver, ep Endpoint, proto, flags int,
	delay time.Duration, fafc int, clock Clock, rec *traceRecorder) ([]AddrInfo, <-chan []AddrInfo, error) {
	// A NUL is asyncio's ValueError before any lookup, as in resolveEndpoint
	// (a C resolver would look up the name cut short at the NUL).
	if ep.Host != nil && strings.IndexByte(*ep.Host, 0) >= 0 || ep.Port != nil && strings.IndexByte(*ep.Port, 0) >= 0 {
		return nil, nil, &ValueError{Text: "embedded null character"}
	}
	answers := make(chan familyAnswer, 2)
	for _, family := range []int{unix.AF_INET6, unix.AF_INET} {
		rec.resolveStart(family)
		goSafe(func() {
			a := familyAnswer{family: family, err: fmt.Errorf("name lookup for family %d panicked", family)}
			defer func() {
				rec.resolveEnd(family, len(a.infos), a.err)
				answers <- a
			}()
			a.infos, a.err = r.GetAddrInfo(ctx, ep.Host, ep.Port,
				Hints{Family: family, Type: unix.SOCK_STREAM, Proto: proto, Flags: flags})
		})
	}
	var v6, v4 *familyAnswer
	take := func(a familyAnswer) {
		if a.family == unix.AF_INET6 {
			v6 = &a
		} else {
			v4 = &a
		}
	}
	next := func() error {
		select {
		case a := <-answers:
			a.infos = dedupe(a.infos)
			take(a)
			return nil
		case <-ctx.Done():
			return ErrCancelled
		}
	}
	if err := next(); err != nil {
		return nil, nil, err
	}
	switch {
	case v6.usable():
		// AAAA first: start at once; A joins the race when it comes.
		return v6.infos, forwardLater(ctx, answers), nil
	case v6 != nil:
		// AAAA gave nothing: A is all there can be.
		if err := next(); err != nil {
			return nil, nil, err
		}
		if v4.usable() {
			return v4.infos, nil, nil
		}
		return nil, nil, bothFailed(v6, v4)
	case !v4.usable():
		if err := next(); err != nil {
			return nil, nil, err
		}
		if v6.usable() {
			return v6.infos, nil, nil
		}
		return nil, nil, bothFailed(v6, v4)
	}
	// A first: wait the Resolution Delay for AAAA.
	withAAAA := func(a familyAnswer) ([]AddrInfo, <-chan []AddrInfo, error) {
		a.infos = dedupe(a.infos)
		take(a)
		if v6.usable() {
			return Interleave(append(append([]AddrInfo(nil), v6.infos...), v4.infos...), max(fafc, 1)), nil, nil
		}
		return v4.infos, nil, nil
	}
	timer := clock.NewTimer(delay)
	defer timer.Stop()
	select {
	case a := <-answers:
		return withAAAA(a)
	case <-timer.C():
		// An AAAA answer already in hand wins over the timer (select
		// picks at random when both are ready).
		select {
		case a := <-answers:
			return withAAAA(a)
		default:
		}
		return v4.infos, forwardLater(ctx, answers), nil
	case <-ctx.Done():
		return nil, nil, ErrCancelled
	}
}

// dedupe drops repeated addresses: per-family lookups can give the same one
// twice (glibc answers an A query for a name listed as ::1 and 127.0.0.1
// in /etc/hosts with 127.0.0.1 twice), and one address needs one attempt.
func dedupe(infos []AddrInfo) []AddrInfo {
	seen := make(map[SockAddr]bool, len(infos))
	out := infos[:0:0]
	for _, ai := range infos {
		key := ai.Addr
		key.Host = ""
		if !seen[key] {
			seen[key] = true
			out = append(out, ai)
		}
	}
	return out
}

// forwardLater passes the second family's addresses on when they come.
func forwardLater(ctx context.Context, answers <-chan familyAnswer) <-chan []AddrInfo {
	later := make(chan []AddrInfo, 1)
	goSafe(func() {
		defer close(later)
		select {
		case a := <-answers:
			a.infos = dedupe(a.infos)
			if a.usable() {
				later <- a.infos
			}
		case <-ctx.Done():
		}
	})
	return later
}

// bothFailed is the error when neither family gave an address: the A
// lookup's error, else the AAAA one's, else asyncio's empty-list error.
func bothFailed(v6, v4 *familyAnswer) error {
	switch {
	case v4 != nil && v4.err != nil:
		return v4.err
	case v6 != nil && v6.err != nil:
		return v6.err
	}
	return errEmptyList()
}
