package main

import "sync"

// Handles are opaque numbers handed to C as pointers. They come from a
// counter and are never reused, so a stale handle cannot reach a newer
// object: it finds nothing and the call returns -EBADF. (mattn/go-pointer,
// which CONTRACT.md names, frees its malloc'd tokens, and malloc hands the
// same addresses out again; see README "Departures".)
//
// Numbers start high and step by 16 so they look like aligned pointers and
// are never confused with small integers or descriptors.
const (
	handleBase = 0x1000_0000_0000
	handleStep = 16
)

type handleTable struct {
	mu   sync.Mutex
	next uintptr
	m    map[uintptr]any
}

var handles = handleTable{next: handleBase, m: map[uintptr]any{}}

func (h *handleTable) add(v any) uintptr {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next += handleStep
	h.m[h.next] = v
	return h.next
}

func (h *handleTable) get(id uintptr) any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id]
}

func (h *handleTable) remove(id uintptr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, id)
}

func (h *handleTable) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func loopFrom(id uintptr) *loopHandle {
	l, _ := handles.get(id).(*loopHandle)
	return l
}

func transportFrom(id uintptr) *transportHandle {
	t, _ := handles.get(id).(*transportHandle)
	return t
}

func requestFrom(id uintptr) *connection {
	c, _ := handles.get(id).(*connection)
	return c
}
