// Command goconn-peer is the loopback peer of goconn's test suites (C,
// Python, benchmarks): it makes the test certificates and serves TCP or TLS
// connections in a chosen way.
//
//	goconn-peer certs [--key-type ecdsa|rsa] DIR
//	goconn-peer serve [flags]
//
// certs writes a fresh CA and certificates into DIR (see certs.go). serve
// listens, prints "PORT <n>" as the first line of stdout, and serves every
// connection in its own goroutine until killed or --count connections are
// done (see serve.go and modes.go; `goconn-peer serve -h` lists the flags).
//
// For the benchmarks (tests/bench): --mode idle holds each connection with
// little memory, reading and dropping what comes until end of stream, then
// closes; --backlog N sets the listen backlog (the kernel caps it at
// net.core.somaxconn) so that thousands of concurrent connects are not
// dropped from a full accept queue; --curves limits the TLS key exchange
// groups the server accepts (x25519 makes every client, Go or OpenSSL, do
// the same X25519 exchange). The soft RLIMIT_NOFILE is raised to the
// hard limit at start (Go's runtime does that by itself).
//
// What serve sees is written to stderr, one line per event, so a test can
// wait for it. <id> numbers the connections from 1 in accept order:
//
//	ACCEPT <id> <remote address>
//	HELLO <id> sni=<name|-> alpn=<p1,p2|->            TLS ClientHello
//	HANDSHAKE <id> ok version=<TLSv1.3> cipher=<Go name> alpn=<p|-> resumed=<0|1> client_cert=<0|1>
//	HANDSHAKE <id> error <text>
//	SENT <id> bytes=<n> sha256=<hex>                   send modes, once the bytes are written
//	RECV <id> bytes=<n> sha256=<hex>                   discard, at end of stream
//	EOF <id> notify|fin|reset|error <text>              end of stream: TLS close_notify (with
//	                                                   the TCP stream still open), TCP FIN
//	                                                   (for TLS: with no close_notify before
//	                                                   it), a TCP reset, or another error
//	DONE <id>                                          the peer is finished with the connection
//
// After a failed TLS handshake the peer reads the raw socket until the
// client closes it, and reports that with an EOF line: tests use it to see
// that the client closed its socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

const usage = `usage:
  goconn-peer certs [--key-type ecdsa|rsa] DIR
  goconn-peer serve [flags]     (goconn-peer serve -h for the flags)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "certs":
		err = certsCommand(os.Args[2:])
	case "serve":
		err = serveCommand(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var fe flagError
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h: the flag set printed its usage.
	case errors.As(err, &fe):
		os.Exit(2) // the flag set printed the error and the usage
	case err != nil:
		fmt.Fprintf(os.Stderr, "goconn-peer: %v\n", err)
		os.Exit(1)
	}
}

// flagError is a command line the flag package rejected (and reported).
type flagError struct{ error }

func (e flagError) Unwrap() error { return e.error }
