package core

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSocketConnBufferedReads: crypto/tls's transport reads the socket in big
// pieces and serves small asks from them: every byte arrives once and in
// order whatever the ask sizes, EOF comes only after the last byte, and no
// pooled buffer is held once everything has been served.
func TestSocketConnBufferedReads(t *testing.T) {
	s, peer := testSocketPair(t)
	c := &socketConn{s: s}
	want := rlPattern(0, 3*MaxReadSize+12345)
	go func() {
		_ = unix.SetNonblock(peer, false)
		for off := 0; off < len(want); {
			n := min(100000, len(want)-off)
			w, err := unix.Write(peer, want[off:off+n])
			if err != nil {
				return
			}
			off += w
		}
		_ = unix.Shutdown(peer, unix.SHUT_WR)
	}()
	asks := []int{1, 7, 100, 16 * 1024, 40960, MaxReadSize, 2 * MaxReadSize}
	var got []byte
	for i := 0; ; i++ {
		b := make([]byte, asks[i%len(asks)])
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if errors.Is(err, io.EOF) {
			if n != 0 {
				t.Fatalf("EOF with %d bytes", n)
			}
			break
		}
		if err != nil {
			t.Fatalf("Read: %v after %d bytes", err, len(got))
		}
		if n == 0 {
			t.Fatal("Read returned 0 bytes and no error")
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream differs: %s", firstDiff(got, want))
	}
	if c.rbuf != nil {
		t.Error("a pooled buffer is still held after everything was served")
	}
}

// TestSocketConnReadEndsOnClose: a reader waiting for data is released by
// Close with an error, holding no buffer.
func TestSocketConnReadEndsOnClose(t *testing.T) {
	s, _ := testSocketPair(t)
	c := &socketConn{s: s}
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read after Close returned no error")
		}
	case <-time.After(rlWait):
		t.Fatal("Read did not return after Close")
	}
	if c.rbuf != nil {
		t.Error("a buffer is held by a reader that got nothing")
	}
}
