package core

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// socketConn is the net.Conn crypto/tls runs over: reads and writes go
// through the Socket's RawConn (the netpoller parks the goroutine, never a
// thread), sends use MSG_NOSIGNAL, and deadlines are the os.File's.
//
// Reads are buffered. crypto/tls asks for a record or two at a time (tens of
// KiB); one read of up to MaxReadSize serves many of those asks, as
// asyncio's 256 KiB recv into the SSL object's buffer does, and cuts the
// system calls and netpoller waits of a bulk transfer several times over.
// The buffer comes from the read pool once data is there, and goes back as
// soon as it has been served: an idle connection holds none.
type socketConn struct {
	s    *Socket
	rbuf *[]byte // nil when empty; only the one reader (the handshake, then tlsReadLoop) touches it
	r, w int
}

func (c *socketConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.rbuf == nil {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, (*c.rbuf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		readBufPool.Put(c.rbuf)
		c.rbuf = nil
	}
	return n, nil
}

// fill reads once into a pooled buffer, taken only when the socket has data.
func (c *socketConn) fill() error {
	var bufp *[]byte
	var n int
	var rerr error
	err := c.s.raw.Read(func(fd uintptr) bool {
		bufp = readBufPool.Get().(*[]byte)
		n, rerr = unix.Read(int(fd), *bufp)
		if rerr == unix.EAGAIN || rerr == unix.EINTR {
			readBufPool.Put(bufp)
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return err // the wait ended: closed, or a deadline
	case rerr != nil || n <= 0:
		readBufPool.Put(bufp)
		if rerr != nil {
			return rerr
		}
		return io.EOF
	}
	c.rbuf, c.r, c.w = bufp, 0, n
	return nil
}

func (c *socketConn) Write(b []byte) (int, error) {
	written := 0
	var werr error
	err := c.s.raw.Write(func(fd uintptr) bool {
		for written < len(b) {
			n, e := unix.SendmsgN(int(fd), b[written:], nil, nil, unix.MSG_NOSIGNAL)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				werr = e
				return true
			}
			written += n
		}
		return true
	})
	if err != nil {
		return written, err
	}
	return written, werr
}

func (c *socketConn) Close() error                       { return c.s.Close() }
func (c *socketConn) LocalAddr() net.Addr                { return sockNetAddr(c.s.sockName()) }
func (c *socketConn) RemoteAddr() net.Addr               { return sockNetAddr(c.s.peerName()) }
func (c *socketConn) SetDeadline(t time.Time) error      { return c.s.file.SetDeadline(t) }
func (c *socketConn) SetReadDeadline(t time.Time) error  { return c.s.file.SetReadDeadline(t) }
func (c *socketConn) SetWriteDeadline(t time.Time) error { return c.s.file.SetWriteDeadline(t) }

func sockNetAddr(a SockAddr, ok bool) net.Addr {
	if !ok || !a.IP.IsValid() {
		return &net.TCPAddr{}
	}
	return &net.TCPAddr{IP: a.IP.AsSlice(), Port: a.Port}
}

// tlsHandshake runs the client handshake on a connected socket within the
// handshake timeout. A cancelled ctx gives ErrCancelled. On failure the
// socket is left for the caller to close.
func tlsHandshake(ctx context.Context, sock *Socket, prof *tlsProfile, serverName string, checkHost bool, timeout float64) (*tls.Conn, error) {
	conn := tls.Client(&socketConn{s: sock}, prof.config(serverName, checkHost))
	hctx, cancel := context.WithTimeout(ctx, secondsToDuration(timeout))
	defer cancel()
	err := conn.HandshakeContext(hctx)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, ErrCancelled
	}
	timedOut := errors.Is(hctx.Err(), context.DeadlineExceeded)
	return nil, handshakeError(err, timedOut, timeout)
}

func secondsToDuration(s float64) time.Duration {
	if s > 1e9 || s != s { // NaN passes asyncio's "<= 0" check: it never fires
		s = 1e9
	}
	d := time.Duration(s * float64(time.Second))
	if d == 0 && s > 0 {
		d = 1 // below a nanosecond is still a timeout: 0 would mean none (attempt_timeout)
	}
	return d
}

// TLSInfo is what a TLS transport tells about its session (asyncio's
// 'cipher', 'peercert' and 'ssl_object' extra info).
type TLSInfo struct {
	Version      uint16
	VersionName  string // "TLSv1.3"
	Cipher       string // OpenSSL's name, e.g. "TLS_AES_256_GCM_SHA384"
	CipherProto  string // the protocol the suite belongs to, as SSLObject.cipher()[1]
	CipherBits   int
	ALPN         string // "" when none was agreed
	PeerChain    [][]byte
	Resumed      bool
	ServerName   string // the name sent as SNI and checked, "" for none
	Verified     bool   // the chain was verified (getpeercert() is then not empty)
	CheckedHost  bool
	Compression  string // always "" (TLS compression is never used)
	HandshakeDur time.Duration
}

func tlsInfoOf(cs tls.ConnectionState, serverName string, verified bool) *TLSInfo {
	name, proto, bits := cipherInfo(cs.CipherSuite)
	info := &TLSInfo{
		Version:     cs.Version,
		VersionName: tlsVersionName(cs.Version),
		Cipher:      name,
		CipherProto: proto,
		CipherBits:  bits,
		ALPN:        cs.NegotiatedProtocol,
		Resumed:     cs.DidResume,
		ServerName:  serverName,
		Verified:    verified,
	}
	for _, c := range cs.PeerCertificates {
		info.PeerChain = append(info.PeerChain, c.Raw)
	}
	return info
}
