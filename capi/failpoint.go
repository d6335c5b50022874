package main

import (
	"os"

	"github.com/goconn/goconn/core"
)

// Test failpoints: GOCONN_TEST_PANIC=<name> makes the named place panic once
// the library is loaded, so tests can check that a panic is recovered and
// poisons the library instead of killing the host process. Names are the
// export names (goconn_loop_dispatch, goconn_open_connection,
// goconn_transport_write) and "core.read" for a library goroutine.
var failpointName = os.Getenv("GOCONN_TEST_PANIC")

func failpoint(name string) {
	if failpointName != "" && failpointName == name {
		panic("goconn test failpoint: " + name)
	}
}

func init() {
	if failpointName != "" {
		core.SetFailpoint(failpoint)
	}
}
