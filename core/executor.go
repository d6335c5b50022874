package core

import "sync"

// Executor runs a connection's callbacks. Every callback of one connection
// goes through one Executor, which runs them one at a time in the order they
// were posted, so a protocol never sees two callbacks at once.
type Executor interface {
	// Post queues task to run later. It never runs task on the caller's stack.
	Post(task func())
	// Inline reports whether the caller's thread is where callbacks run, so
	// pause_writing may be called synchronously from write(), as asyncio
	// does. True for loop mode, false for direct mode.
	Inline() bool
	// Done says the connection has delivered its last callback.
	Done()
}

// serialExecutor is direct mode: callbacks run on library goroutines, one at a
// time per connection. A goroutine exists only while tasks are queued.
type serialExecutor struct {
	mu      sync.Mutex
	queue   []func()
	running bool
}

// NewDirectExecutor returns an executor for one connection in direct mode.
func NewDirectExecutor() Executor { return &serialExecutor{} }

func (s *serialExecutor) Post(task func()) {
	s.mu.Lock()
	s.queue = append(s.queue, task)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		goSafe(s.run)
	}
}

func (s *serialExecutor) run() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			s.queue = nil
			s.mu.Unlock()
			return
		}
		task := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		runSafe(task)
	}
}

func (s *serialExecutor) Inline() bool { return false }
func (s *serialExecutor) Done()        {}
