package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serveConfig is what the serve flags say.
type serveConfig struct {
	listen    string
	useTLS    bool
	certFile  string
	keyFile   string
	clientCA  string
	alpn      string
	minVer    string
	maxVer    string
	tickets   bool
	curves    string
	mode      string
	bytes     int64
	noHash    bool
	count     int
	backlog   int
	dieParent bool
}

func serveCommand(args []string) error {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "`ADDR` to listen on, e.g. [::1]:0")
	fs.BoolVar(&c.useTLS, "tls", false, "serve TLS")
	certDir := fs.String("certdir", "", "a `DIR` made by goconn-peer certs: --cert and --key default to its server.pem and server.key")
	fs.StringVar(&c.certFile, "cert", "", "server certificate chain (PEM `FILE`)")
	fs.StringVar(&c.keyFile, "key", "", "server key (PEM `FILE`)")
	fs.StringVar(&c.clientCA, "client-ca", "", "require client certificates signed by the CAs in this PEM `FILE`")
	fs.StringVar(&c.alpn, "alpn", "", "ALPN `PROTOCOLS` to accept, in order of preference, e.g. h2,http/1.1")
	fs.StringVar(&c.minVer, "min-version", "", "lowest TLS `VERSION`: 1.0, 1.1, 1.2 or 1.3")
	fs.StringVar(&c.maxVer, "max-version", "", "highest TLS `VERSION`: 1.0, 1.1, 1.2 or 1.3")
	fs.StringVar(&c.curves, "curves", "", "key exchange `GROUPS` to accept, in order of preference, e.g. x25519 (of x25519mlkem768, x25519, p256, p384, p521; default: Go's)")
	fs.BoolVar(&c.tickets, "tickets", true, "issue session tickets (resumption); --tickets=false turns them off")
	fs.StringVar(&c.mode, "mode", "echo", "`MODE`, what to do with each connection: "+strings.Join(modeNames(), ", "))
	fs.Int64Var(&c.bytes, "bytes", 0, "`N` bytes for the send, close-notify-after and reset-after modes")
	fs.BoolVar(&c.noHash, "no-hash", false, "do not hash what is sent or read (benchmarks: the peer then costs little CPU)")
	fs.IntVar(&c.count, "count", 0, "exit after serving `N` connections (0: serve until killed)")
	fs.IntVar(&c.backlog, "backlog", 0, "listen backlog `N` (0: Go's default, net.core.somaxconn); the kernel caps it at net.core.somaxconn")
	fs.BoolVar(&c.dieParent, "die-with-parent", false, "exit when the process that started this one ends (Linux)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: goconn-peer serve [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagError{err}
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *certDir != "" {
		if c.certFile == "" {
			c.certFile = filepath.Join(*certDir, "server.pem")
		}
		if c.keyFile == "" {
			c.keyFile = filepath.Join(*certDir, "server.key")
		}
	}
	handler, ok := modes[c.mode]
	if !ok {
		return fmt.Errorf("serve: unknown --mode %q (one of %s)", c.mode, strings.Join(modeNames(), ", "))
	}
	if c.dieParent {
		dieWithParent()
	}
	var cfg *tls.Config
	if c.useTLS {
		var err error
		if cfg, err = c.tlsConfig(); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	if c.backlog > 0 {
		if err := setBacklog(ln.(*net.TCPListener), c.backlog); err != nil {
			ln.Close()
			return err
		}
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	return acceptLoop(ln, cfg, handler, &c)
}

// setBacklog calls listen(2) again on the listening socket, which Linux
// allows and which sets the accept queue's length (net.Listen uses
// net.core.somaxconn).
func setBacklog(ln *net.TCPListener, n int) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), n) }); err != nil {
		return err
	}
	if lerr != nil {
		return fmt.Errorf("serve: --backlog %d: %w", n, lerr)
	}
	return nil
}

// acceptLoop serves each connection in its own goroutine; with --count it
// stops accepting after that many and returns once they are done.
func acceptLoop(ln net.Listener, cfg *tls.Config, handler modeFunc, c *serveConfig) error {
	var wg sync.WaitGroup
	for id := 1; c.count == 0 || id <= c.count; id++ {
		raw, err := ln.Accept()
		if err != nil {
			return err
		}
		logf("ACCEPT %d %s", id, raw.RemoteAddr())
		wg.Add(1)
		go func(id int, raw *net.TCPConn) {
			defer wg.Done()
			defer logf("DONE %d", id)
			defer raw.Close()
			serveConn(&conn{id: id, raw: raw, cfg: c}, cfg, handler)
		}(id, raw.(*net.TCPConn))
	}
	ln.Close()
	wg.Wait()
	return nil
}

// serveConn runs the TLS handshake (unless the mode works below TLS), then
// the mode.
func serveConn(c *conn, cfg *tls.Config, handler modeFunc) {
	c.rw = c.raw
	if cfg != nil && !rawModes[c.cfg.mode] {
		perConn := cfg.Clone()
		perConn.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			logf("HELLO %d sni=%s alpn=%s", c.id, orDash(h.ServerName), orDash(strings.Join(h.SupportedProtos, ",")))
			return nil, nil
		}
		c.rawEOF = &eofConn{Conn: c.raw}
		tc := tls.Server(c.rawEOF, perConn)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			logf("HANDSHAKE %d error %v", c.id, err)
			c.drainRaw() // see that the client closes its socket
			return
		}
		st := tc.ConnectionState()
		logf("HANDSHAKE %d ok version=%s cipher=%s alpn=%s resumed=%d client_cert=%d", c.id,
			versionName(st.Version), tls.CipherSuiteName(st.CipherSuite), orDash(st.NegotiatedProtocol),
			b2i(st.DidResume), b2i(len(st.PeerCertificates) > 0))
		c.rw, c.tls = tc, tc
	}
	handler(c)
}

// tlsConfig builds the server's TLS settings from the flags.
func (c *serveConfig) tlsConfig() (*tls.Config, error) {
	if c.certFile == "" || c.keyFile == "" {
		return nil, errors.New("serve: --tls needs --cert and --key (or --certdir)")
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		SessionTicketsDisabled: !c.tickets,
	}
	// One ticket key for the process: connections share it although each
	// gets its own copy of the config.
	if _, err := rand.Read(cfg.SessionTicketKey[:]); err != nil {
		return nil, err
	}
	if c.alpn != "" {
		cfg.NextProtos = strings.Split(c.alpn, ",")
	}
	if c.curves != "" {
		for _, name := range strings.Split(c.curves, ",") {
			id, ok := curveIDs[strings.ToLower(name)]
			if !ok {
				return nil, fmt.Errorf("serve: unknown --curves group %q", name)
			}
			cfg.CurvePreferences = append(cfg.CurvePreferences, id)
		}
	}
	if cfg.MinVersion, err = parseVersion(c.minVer); err != nil {
		return nil, err
	}
	if cfg.MaxVersion, err = parseVersion(c.maxVer); err != nil {
		return nil, err
	}
	if c.clientCA != "" {
		data, err := os.ReadFile(c.clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("serve: no certificate in %s", c.clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

var curveIDs = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768,
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
}

func parseVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "1.0":
		return tls.VersionTLS10, nil
	case "1.1":
		return tls.VersionTLS11, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("serve: unknown TLS version %q (1.0, 1.1, 1.2 or 1.3)", s)
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return fmt.Sprintf("0x%04x", v)
}

// dieWithParent asks Linux for SIGKILL when the parent ends, so that a test
// that crashes leaves no peer behind.
func dieWithParent() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if os.Getppid() == 1 {
		os.Exit(1) // the parent is already gone
	}
}

var logMu sync.Mutex

// logf writes one event line to stderr (unbuffered: one write per line).
func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
