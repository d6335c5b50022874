package core

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Loop is loop mode's event source, watched by the owner's thread through one
// descriptor (with epoll, poll or asyncio's add_reader), as libuv's backend
// fd and libmpv's wakeup pipe are. That descriptor is an epoll set holding:
//
//   - an eventfd, readable exactly while tasks are pending: library
//     goroutines post tasks (connection results, TLS data, write-side
//     events), and Dispatch runs them on the owner's thread;
//   - the sockets of plain-TCP transports that want to read (see
//     transport_read_loop.go): Dispatch reads them itself, on the owner's
//     thread, as asyncio's selector loop does, so received data crosses no
//     thread and no goroutine on its way to the protocol;
//   - the sockets of connection attempts under way (see connect_loop.go):
//     Dispatch finishes the connect when one turns writable, as asyncio's
//     sock_connect does from its writer callback.
type Loop struct {
	efd  int // the task eventfd
	epfd int // the epoll set: what the owner watches

	mu       sync.Mutex
	queue    []func()
	signaled bool // the eventfd holds a count
	live     int  // connections that still have callbacks to deliver here
	closed   bool
	watched  map[uint64]loopWatcher // sockets in the epoll set, by registration id
	nextID   uint64                 // registration ids are never reused

	dispatching atomic.Bool
	yield       schedulerPass // touched only by the dispatching thread
}

// taskEventID is the eventfd's registration id in the epoll set.
const taskEventID = 0

// maxReadyPerDispatch bounds the socket readiness one Dispatch takes in; the
// rest stays ready (level-triggered) for the next call.
const maxReadyPerDispatch = 64

var (
	// ErrLoopBusy: the loop still has live connections, so it cannot be freed.
	ErrLoopBusy = errors.New("the loop still has live connections")
	// ErrLoopClosed: the loop was freed.
	ErrLoopClosed = errors.New("the loop is closed")
	// ErrReentrantDispatch: Dispatch was called from inside a callback it runs.
	ErrReentrantDispatch = errors.New("goconn_loop_dispatch called from inside a callback")
)

// NewLoop makes a loop with its eventfd and epoll set.
func NewLoop() (*Loop, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, osErrorFrom(err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(efd)
		return nil, osErrorFrom(err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEpollID(&ev, taskEventID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, osErrorFrom(err)
	}
	return &Loop{efd: efd, epfd: epfd, watched: make(map[uint64]loopWatcher)}, nil
}

// FD is the descriptor that is readable while there is something to
// dispatch: a pending task or a readable socket.
func (l *Loop) FD() int { return l.epfd }

// The epoll event's 64-bit user data holds a registration id. x/sys/unix
// spells that union as two int32 fields, Fd and Pad.
func setEpollID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func epollID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// loopWatcher is what owns a socket in the epoll set: a reading transport
// or a connect under way. Dispatch calls loopReady on the owner's thread
// while the socket is ready, with the registration id it saw.
type loopWatcher interface {
	loopReady(id uint64)
}

// watch adds a socket to the epoll set for events (EPOLLIN or EPOLLOUT,
// level-triggered); Dispatch then calls w.loopReady while it is ready. It
// returns the registration id for unwatch. The caller holds the socket's
// descriptor open.
func (l *Loop) watch(w loopWatcher, fd int, events uint32) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrLoopClosed
	}
	l.nextID++
	id := l.nextID
	ev := unix.EpollEvent{Events: events}
	setEpollID(&ev, id)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0, osErrorFrom(err)
	}
	l.watched[id] = w
	return id, nil
}

// unwatch takes the socket out of the epoll set. It must run before the
// descriptor is closed: a duplicate of it (an adopted socket's) would keep a
// stale registration alive. Readiness already collected for the id is
// ignored from now on.
func (l *Loop) unwatch(id uint64, fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.watched, id)
	if !l.closed {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

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

// Dispatch runs up to max pending events (all of them when max <= 0) on the
// calling thread and reports how many ran: first the tasks posted before the
// call, then one read on each readable socket, the order of an asyncio loop
// iteration (call_soon callbacks already queued run before the I/O callbacks
// the poll adds). Tasks posted while it runs wait for the next call, as
// asyncio's call_soon callbacks wait for the next iteration; the descriptor
// stays readable for them.
func (l *Loop) Dispatch(max int) (int, error) {
	if !l.dispatching.CompareAndSwap(false, true) {
		return 0, ErrReentrantDispatch
	}
	defer l.dispatching.Store(false)
	l.yield.maybe(MonotonicNow())

	var events [maxReadyPerDispatch]unix.EpollEvent
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrLoopClosed
	}
	nready := 0
	if len(l.watched) > 0 {
		// Only sockets matter here: the queue itself says whether tasks wait.
		nready, _ = unix.EpollWait(l.epfd, events[:], 0)
		if nready < 0 {
			nready = 0 // EINTR: the next call sees them
		}
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
		if l.signaled { // else the eventfd holds nothing: no read (a syscall) per dispatch
			l.signaled = false
			var buf [8]byte
			_, _ = unix.Read(l.efd, buf[:])
		}
	}
	l.mu.Unlock()

	for _, task := range batch {
		runSafe(task)
	}
	ran := n
	for i := 0; i < nready && (max <= 0 || ran < max); i++ {
		id := epollID(&events[i])
		if id == taskEventID {
			continue
		}
		// Looked up now, not at the poll: a task above may have stopped it.
		l.mu.Lock()
		w := l.watched[id]
		l.mu.Unlock()
		if w != nil {
			runSafe(func() { w.loopReady(id) })
			ran++
		}
	}
	return ran, nil
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
	clear(l.watched) // none can be left: each belongs to a live connection
	unix.Close(l.epfd)
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

// loopOf is the loop an executor dispatches on, or nil in direct mode.
func loopOf(e Executor) *Loop {
	if le, ok := e.(*loopExecutor); ok {
		return le.l
	}
	return nil
}
func (e *loopExecutor) Inline() bool { return true }
func (e *loopExecutor) Done() {
	if e.done.Swap(true) {
		return
	}
	e.l.mu.Lock()
	e.l.live--
	e.l.mu.Unlock()
}
