package core

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Loop is loop mode's event queue. Library goroutines post tasks; the owner's
// thread runs them in Dispatch. An eventfd is readable exactly while tasks are
// pending, so the owner can watch it with epoll, poll or asyncio's add_reader,
// as libmpv's wakeup pipe and c-ares' socket callbacks are watched.
type Loop struct {
	efd int

	mu       sync.Mutex
	queue    []func()
	signaled bool // the eventfd holds a count
	live     int  // connections that still have callbacks to deliver here
	closed   bool

	dispatching atomic.Bool
}

var (
	// ErrLoopBusy: the loop still has live connections, so it cannot be freed.
	ErrLoopBusy = errors.New("the loop still has live connections")
	// ErrLoopClosed: the loop was freed.
	ErrLoopClosed = errors.New("the loop is closed")
	// ErrReentrantDispatch: Dispatch was called from inside a callback it runs.
	ErrReentrantDispatch = errors.New("goconn_loop_dispatch called from inside a callback")
)

// NewLoop makes a loop with its eventfd.
func NewLoop() (*Loop, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, osErrorFrom(err)
	}
	return &Loop{efd: fd}, nil
}

// FD is the descriptor that is readable while tasks are pending.
func (l *Loop) FD() int { return l.efd }

// Executor binds one connection to the loop. It fails once the loop is closed.
func (l *Loop) Executor() (Executor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrLoopClosed
	}
	l.live++
	return &loopExecutor{l: l}, nil
}

func (l *Loop) post(task func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, task)
	if !l.signaled && !l.closed {
		l.signaled = true
		var one = [8]byte{1}
		_, _ = unix.Write(l.efd, one[:])
	}
}

// Dispatch runs up to max pending tasks (all of them when max <= 0) on the
// calling thread and reports how many ran. Tasks posted while it runs wait for
// the next call, as asyncio's call_soon callbacks wait for the next
// iteration; the eventfd stays readable for them.
func (l *Loop) Dispatch(max int) (int, error) {
	if !l.dispatching.CompareAndSwap(false, true) {
		return 0, ErrReentrantDispatch
	}
	defer l.dispatching.Store(false)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrLoopClosed
	}
	n := len(l.queue)
	if max > 0 && n > max {
		n = max
	}
	batch := make([]func(), n)
	copy(batch, l.queue)
	clear(l.queue[:n])
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil
		l.signaled = false
		var buf [8]byte
		_, _ = unix.Read(l.efd, buf[:])
	}
	l.mu.Unlock()

	for _, task := range batch {
		runSafe(task)
	}
	return n, nil
}

// Pending reports how many tasks wait.
func (l *Loop) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// Close frees the loop. It fails with ErrLoopBusy while connections still have
// callbacks to deliver, as libuv's uv_loop_close does; close or abort them and
// dispatch until their connection_lost (or on_done) has run.
func (l *Loop) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrLoopClosed
	}
	if l.live > 0 {
		return ErrLoopBusy
	}
	// What is left in the queue belongs to connections that have ended
	// (a close() queued by a failed factory, say): it has nothing to deliver.
	l.queue = nil
	l.closed = true
	return unix.Close(l.efd)
}

// Live reports how many connections are bound to the loop.
func (l *Loop) Live() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live
}

type loopExecutor struct {
	l    *Loop
	done atomic.Bool
}

func (e *loopExecutor) Post(task func()) { e.l.post(task) }
func (e *loopExecutor) Inline() bool     { return true }
func (e *loopExecutor) Done() {
	if e.done.Swap(true) {
		return
	}
	e.l.mu.Lock()
	e.l.live--
	e.l.mu.Unlock()
}
