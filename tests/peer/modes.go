package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sort"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// conn is one accepted connection.
type conn struct {
	id     int
	raw    *net.TCPConn
	rw     net.Conn  // what the mode reads and writes: the TLS conn, or raw
	tls    *tls.Conn // nil for plain TCP
	rawEOF *eofConn  // what crypto/tls reads through (TLS only)
	cfg    *serveConfig
}

// eofConn notes whether the TCP stream under crypto/tls has ended: its
// io.EOF means close_notify only while the TCP stream has not (it also
// takes a FIN at a record boundary as a clean end).
type eofConn struct {
	net.Conn
	sawEOF atomic.Bool
}

func (e *eofConn) Read(b []byte) (int, error) {
	n, err := e.Conn.Read(b)
	if errors.Is(err, io.EOF) {
		e.sawEOF.Store(true)
	}
	return n, err
}

type modeFunc func(*conn)

// The modes. Sent bytes follow one pattern: byte i of the stream is
// i % 251, so a shifted or dropped piece shows.
var modes = map[string]modeFunc{
	"echo":                echoMode,
	"send":                sendMode,
	"discard":             discardMode,
	"idle":                idleMode,
	"stall-handshake":     stallMode,
	"close-mid-handshake": closeMidHandshakeMode,
	"no-close-notify":     noCloseNotifyMode,
	"close-notify-after":  closeNotifyAfterMode,
	"reset-after":         resetAfterMode,
}

// rawModes work on the TCP connection even with --tls: no handshake.
var rawModes = map[string]bool{"stall-handshake": true, "close-mid-handshake": true}

func modeNames() []string {
	var names []string
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// echoMode echoes until end of stream, then closes (TLS: close_notify, then
// the TCP close).
func echoMode(c *conn) {
	c.echo()
	c.rw.Close()
}

// sendMode sends --bytes of the pattern, then closes at once.
func sendMode(c *conn) {
	c.send(c.cfg.bytes)
	c.rw.Close()
}

// discardMode reads everything, reports its count and hash, then closes.
func discardMode(c *conn) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, c.rw, make([]byte, 256*1024))
	if err == nil {
		err = io.EOF // io.Copy turns a clean end into nil
	}
	logf("RECV %d bytes=%d sha256=%s", c.id, n, hex.EncodeToString(h.Sum(nil)))
	c.logEOF(err)
	c.rw.Close()
}

// idleMode holds the connection: it reads (and drops) what comes through a
// small buffer until end of stream, then closes (TLS: close_notify, then
// the TCP close). It logs nothing per byte and keeps little memory per
// connection, so benchmarks can hold thousands of idle connections or make
// many short ones.
func idleMode(c *conn) {
	var buf [512]byte
	var err error
	for err == nil {
		_, err = c.rw.Read(buf[:])
	}
	c.logEOF(err)
	c.rw.Close()
}

// stallMode accepts the TCP connection and never says a word; it reads
// (and drops) what comes until the client closes.
func stallMode(c *conn) { c.drainRaw() }

// closeMidHandshakeMode reads the first TLS record (the ClientHello), then
// closes the TCP connection.
func closeMidHandshakeMode(c *conn) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.raw, hdr[:]); err != nil {
		c.logEOF(err)
		return
	}
	body := int(hdr[3])<<8 | int(hdr[4])
	if _, err := io.CopyN(io.Discard, c.raw, int64(body)); err != nil {
		c.logEOF(err)
		return
	}
	logf("HELLO %d record type=%d bytes=%d", c.id, hdr[0], body)
	c.raw.Close()
}

// noCloseNotifyMode echoes, but on the client's close_notify (or FIN) it
// answers nothing and keeps the TCP connection open until the client
// closes it.
func noCloseNotifyMode(c *conn) {
	c.echo()
	c.drainRaw()
}

// closeNotifyAfterMode sends --bytes of the pattern, then a clean close:
// close_notify (FIN for plain TCP), then it waits for the client's end of
// stream before closing the socket.
func closeNotifyAfterMode(c *conn) {
	c.send(c.cfg.bytes)
	c.closeWrite()
	_, err := io.Copy(io.Discard, c.rw)
	if err == nil {
		err = io.EOF
	}
	c.logEOF(err)
	c.rw.Close()
}

// resetAfterMode sends --bytes of the pattern, waits until the kernel has
// sent them, then resets the TCP connection (SO_LINGER 0).
func resetAfterMode(c *conn) {
	c.send(c.cfg.bytes)
	c.waitSent(5 * time.Second)
	_ = c.raw.SetLinger(0)
	c.raw.Close()
}

// echo copies what it reads back until end of stream, and logs the end.
func (c *conn) echo() {
	buf := make([]byte, 64*1024)
	for {
		n, err := c.rw.Read(buf)
		if n > 0 {
			if _, werr := c.rw.Write(buf[:n]); werr != nil {
				c.logEOF(werr)
				return
			}
		}
		if err != nil {
			c.logEOF(err)
			return
		}
	}
}

// send writes n bytes of the pattern and logs their hash (unless
// --no-hash). Writes are 256 KiB slices of a precomputed pattern, so a
// benchmark measures the client, not the peer.
func (c *conn) send(n int64) {
	h := sha256.New()
	const chunk = 256 * 1024
	var off int64
	for off < n {
		m := int64(chunk)
		if n-off < m {
			m = n - off
		}
		start := off % 251
		b := patternBuf[start : start+m]
		if _, err := c.rw.Write(b); err != nil {
			logf("SENT %d bytes=%d error %v", c.id, off, err)
			return
		}
		if !c.cfg.noHash {
			h.Write(b)
		}
		off += m
	}
	if c.cfg.noHash {
		logf("SENT %d bytes=%d", c.id, n)
		return
	}
	logf("SENT %d bytes=%d sha256=%s", c.id, n, hex.EncodeToString(h.Sum(nil)))
}

// patternBuf holds the pattern from offset 0 for 256 KiB + 251 bytes: any
// 256 KiB piece of the stream is one slice of it.
var patternBuf = func() []byte {
	b := make([]byte, 256*1024+251)
	fillPattern(b, 0)
	return b
}()

func fillPattern(b []byte, off int64) {
	p := off % 251
	for i := range b {
		b[i] = byte(p)
		if p++; p == 251 {
			p = 0
		}
	}
}

// closeWrite ends the peer's direction: close_notify for TLS, FIN for TCP.
func (c *conn) closeWrite() {
	if c.tls != nil {
		_ = c.tls.CloseWrite()
		return
	}
	_ = c.raw.CloseWrite()
}

// drainRaw reads the TCP connection until the client closes it.
func (c *conn) drainRaw() {
	_, err := io.Copy(io.Discard, c.raw)
	if err == nil {
		err = io.EOF
	}
	c.logRawEOF(err)
}

// logEOF reports how the stream the mode reads ended.
func (c *conn) logEOF(err error) {
	if c.tls != nil && errors.Is(err, io.EOF) && !c.rawEOF.sawEOF.Load() {
		logf("EOF %d notify", c.id)
		return
	}
	c.logRawEOF(err)
}

func (c *conn) logRawEOF(err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		logf("EOF %d fin", c.id)
	case errors.Is(err, syscall.ECONNRESET):
		logf("EOF %d reset", c.id)
	default:
		logf("EOF %d error %v", c.id, err)
	}
}

// waitSent waits until the socket's send queue is empty (SIOCOUTQ).
func (c *conn) waitSent(limit time.Duration) {
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		var pending int32
		_ = rc.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&pending)))
		})
		if pending == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
