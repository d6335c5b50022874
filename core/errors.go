package core

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// The error types in this file carry asyncio's exception texts, so that the C
// layer can hand them out as they are and the Python layer can rebuild the
// exact exception asyncio would raise.

// OSError mirrors Python's OSError(errno, strerror). Error() is what str(exc)
// gives in Python: "[Errno 111] Connect call failed ('127.0.0.1', 1)", or the
// bare text when there is no errno ("no matching local address ...").
type OSError struct {
	Errno syscall.Errno // 0 when the error has no errno
	Text  string        // exc.strerror, or the whole message when Errno is 0
	Addr  *SockAddr     // the remote address of the attempt, when there is one
}

func (e *OSError) Error() string {
	if e.Errno == 0 {
		return e.Text
	}
	return fmt.Sprintf("[Errno %d] %s", int(e.Errno), e.Text)
}

// Unwrap lets errors.Is(err, syscall.ECONNREFUSED) work.
func (e *OSError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// GAIError is a getaddrinfo failure, Python's socket.gaierror: Code is the
// EAI_* value (negative on glibc) and Text is gai_strerror's text.
type GAIError struct {
	Code int
	Text string
}

func (e *GAIError) Error() string { return fmt.Sprintf("[Errno %d] %s", e.Code, e.Text) }

// glibc's EAI_* values, as Python's socket module exposes them.
const (
	EAI_BADFLAGS = -1
	EAI_NONAME   = -2
	EAI_AGAIN    = -3
	EAI_FAIL     = -4
	EAI_FAMILY   = -6
	EAI_SOCKTYPE = -7
	EAI_SERVICE  = -8
	EAI_MEMORY   = -10
	EAI_SYSTEM   = -11
	EAI_OVERFLOW = -12
	EAI_NODATA   = -5
	EAI_ADDRFAM  = -9
)

// ValueError is an argument error that asyncio raises as ValueError, with
// asyncio's message.
type ValueError struct{ Text string }

func (e *ValueError) Error() string { return e.Text }

// OverflowError is Python's OverflowError, raised for ports out of range.
type OverflowError struct{ Text string }

func (e *OverflowError) Error() string { return e.Text }

// TimeoutError is Python's builtin TimeoutError without an errno, as asyncio
// raises it ('SSL shutdown timed out', 'create_connection failed').
type TimeoutError struct{ Text string }

func (e *TimeoutError) Error() string { return e.Text }

// ErrCancelled reports that the request was cancelled before the connection
// was handed to the protocol.
var ErrCancelled = errors.New("create_connection cancelled")

// ErrFactoryFailed reports that the protocol factory did not produce a
// protocol. The caller owns the real cause (a Python exception, say).
var ErrFactoryFailed = errors.New("protocol factory failed")

// MultiError is what create_connection raises when every attempt failed and
// the errors are not all alike: OSError('Multiple exceptions: ...'), or with
// all_errors, ExceptionGroup('create_connection failed', [...]).
type MultiError struct {
	Errors    []error // every attempt's errors, flattened in attempt order
	AllErrors bool
}

func (e *MultiError) Error() string {
	if e.AllErrors {
		noun := "sub-exceptions"
		if len(e.Errors) == 1 {
			noun = "sub-exception"
		}
		return fmt.Sprintf("create_connection failed (%d %s)", len(e.Errors), noun)
	}
	texts := make([]string, len(e.Errors))
	for i, err := range e.Errors {
		texts[i] = err.Error()
	}
	return "Multiple exceptions: " + strings.Join(texts, ", ")
}

// Aggregate turns the flattened attempt errors into the one error asyncio
// would raise (spec section 5): the group with allErrors; the error itself
// when there is one; the first when all texts match; otherwise the
// "Multiple exceptions" error. An empty list gives asyncio's fixed
// TimeoutError('create_connection failed') (gh-135836).
func Aggregate(errs []error, allErrors bool) error {
	if len(errs) == 0 {
		return &TimeoutError{Text: "create_connection failed"}
	}
	if allErrors {
		return &MultiError{Errors: errs, AllErrors: true}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	model := errs[0].Error()
	for _, err := range errs[1:] {
		if err.Error() != model {
			return &MultiError{Errors: errs}
		}
	}
	return errs[0]
}

// strerror gives the C library's text for an errno. The capi layer replaces
// it with libc's strerror_r so the texts match Python's os.strerror exactly;
// the default capitalises Go's table, which is derived from the same texts.
var strerror = func(e syscall.Errno) string {
	s := e.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// SetStrerror installs the C library's strerror. Call it before any connection.
func SetStrerror(f func(syscall.Errno) string) {
	if f != nil {
		strerror = f
	}
}

// Strerror is the text of an errno as Python's os.strerror gives it.
func Strerror(e syscall.Errno) string { return strerror(e) }

// osErrorFrom turns a raw syscall error into Python's OSError(errno, strerror).
func osErrorFrom(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &OSError{Errno: errno, Text: strerror(errno)}
	}
	return err
}
