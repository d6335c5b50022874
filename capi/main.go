// Command capi is goconn's C ABI, built with -buildmode=c-shared into
// libgoconn.so. It only converts between C and Go, holds the handle tables,
// recovers panics, and calls the user's function pointers through C
// trampolines; the behaviour lives in package core.
//
// The public functions (goconn_*) are defined in shim.c, which includes the
// hand-written include/goconn.h, so the compiler checks every definition
// against the documented prototype. Each one calls the Go export of the same
// name with an "x": goconn_transport_write calls goconnx_transport_write.
// Handles cross as uintptr_t, so Go never holds a C pointer it did not make.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -Wall
*/
import "C"

import (
	"github.com/goconn/goconn/capi/libc"
	"github.com/goconn/goconn/core"
)

func main() {}

func init() {
	core.SetPanicHandler(poison)
	core.SetStrerror(libc.Strerror)
}

// versionScriptHash is set at link time to the hash of goconn.map, so that an
// edited version script changes the link and defeats Go's build cache.
var versionScriptHash string

var _ = versionScriptHash
