package core

// Fuzz tests of the Python-style texts of errors: repr() of a str
// (pyStrRepr, addr.go), repr() of a float (PyFloat, tls_errors.go), and the
// aggregation of attempt errors (Aggregate, errors.go).

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode"
	"unicode/utf8"
)

// pyRepr is CPython's unicode_repr. A Go string is not always UTF-8; a
// byte that is not is shown as Python shows it after os.fsdecode: the
// lone surrogate U+DC80+byte.
func pyRepr(s string) string {
	quote := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteRune(quote)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			r = 0xdc00 + rune(s[i])
		}
		i += size
		switch {
		case r == quote || r == '\\':
			b.WriteRune('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case r >= 0xd800 && r < 0xe000 || !unicode.IsPrint(r): // Python's str.isprintable()
			switch {
			case r <= 0xff:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteRune(quote)
	return b.String()
}

// pyLiteral reads a Python string literal back (the escapes repr uses),
// giving the code points, lone surrogates included.
func pyLiteral(lit string) ([]rune, error) {
	if len(lit) < 2 || (lit[0] != '\'' && lit[0] != '"') || lit[len(lit)-1] != lit[0] {
		return nil, fmt.Errorf("not a quoted literal: %q", lit)
	}
	quote := rune(lit[0])
	body := []rune(lit[1 : len(lit)-1])
	var out []rune
	for i := 0; i < len(body); i++ {
		r := body[i]
		switch {
		case r == quote:
			return nil, fmt.Errorf("unescaped quote at %d in %q", i, lit)
		case r == '\n' || r == '\r':
			return nil, fmt.Errorf("raw line break in %q", lit)
		case r != '\\':
			out = append(out, r)
			continue
		}
		i++
		if i >= len(body) {
			return nil, fmt.Errorf("trailing backslash in %q", lit)
		}
		hex := 0
		switch body[i] {
		case '\\', '\'', '"':
			out = append(out, body[i])
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			hex = 2
		case 'u':
			hex = 4
		case 'U':
			hex = 8
		default:
			return nil, fmt.Errorf("unknown escape \\%c in %q", body[i], lit)
		}
		if hex > 0 {
			if i+1+hex > len(body) {
				return nil, fmt.Errorf("short escape in %q", lit)
			}
			v, err := strconv.ParseUint(string(body[i+1:i+1+hex]), 16, 32)
			if err != nil || v > unicode.MaxRune {
				return nil, fmt.Errorf("bad escape in %q", lit)
			}
			out = append(out, rune(v))
			i += hex
		}
	}
	return out, nil
}

// fromPyRunes turns code points back into the Go string they stand for:
// U+DC80..U+DCFF are the bytes that were not UTF-8.
func fromPyRunes(rs []rune) string {
	var b strings.Builder
	for _, r := range rs {
		if r >= 0xdc80 && r <= 0xdcff {
			b.WriteByte(byte(r - 0xdc00))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FuzzPyStrRepr: pyStrRepr is CPython's repr() of the str, which reads
// back (as a Python literal) to the same text, and holds nothing that is
// not printable.
func FuzzPyStrRepr(f *testing.F) {
	for _, s := range []string{"", "127.0.0.1", "fe80::1%eth0", "a'b", `a"b`, `a'"b`, "\\", "\t\n\r\x00\x1b\x7f",
		"é", "\U0001F600", "\x85", "\u0085", "\u00a0", "\u00ad", "\u2028", "\ue000", "\U000E0001", "\u0378", "\ufeff",
		"\xff\x80a", "\xed\xa0\x80", "\ufffd", "/tmp/sock\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := pyStrRepr(s)
		if want := pyRepr(s); got != want {
			t.Fatalf("pyStrRepr(%q) = %s, Python's repr gives %s", s, got, want)
		}
		rs, err := pyLiteral(got)
		if err != nil {
			t.Fatalf("pyStrRepr(%q) = %s: %v", s, got, err)
		}
		if back := fromPyRunes(rs); back != s {
			t.Fatalf("pyStrRepr(%q) = %s reads back as %q", s, got, back)
		}
		for _, r := range got {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("pyStrRepr(%q) = %s holds the unprintable %U", s, got, r)
			}
		}
		// The address reprs around it.
		a := SockAddr{Family: 2, Host: s, Port: 7}
		if a.Repr() != "("+got+", 7)" {
			t.Fatalf("IPv4 repr %s", a.Repr())
		}
		a = SockAddr{Family: 10, Host: s, Port: 7, Flowinfo: 1, ScopeID: 2}
		if a.Repr() != "("+got+", 7, 1, 2)" {
			t.Fatalf("IPv6 repr %s", a.Repr())
		}
		a = SockAddr{Family: 1, Path: s}
		if a.Repr() != got {
			t.Fatalf("AF_UNIX repr %s", a.Repr())
		}
	})
}

// FuzzPyFloat: repr() of a float reads back to the same float; it is
// "inf", "-inf", "nan", a decimal with a point, or (below 1e-4 or from
// 1e16 on) scientific notation with a signed exponent of two digits or
// more, as Python writes it. pyNumber leaves whole numbers without ".0".
func FuzzPyFloat(f *testing.F) {
	for _, v := range []float64{0, math.Copysign(0, -1), 60, 0.2, 1e-5, 1e-4, 1e16, 1e15, 9999999999999998, 1e22,
		5e-324, math.MaxFloat64, math.Inf(1), math.Inf(-1), math.NaN(), -1, 0.1 + 0.2, 123456789.123} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		s := PyFloat(v)
		switch {
		case math.IsNaN(v):
			if s != "nan" {
				t.Fatalf("NaN: %q", s)
			}
			return
		case math.IsInf(v, 1):
			if s != "inf" {
				t.Fatalf("+Inf: %q", s)
			}
			return
		case math.IsInf(v, -1):
			if s != "-inf" {
				t.Fatalf("-Inf: %q", s)
			}
			return
		}
		back, err := strconv.ParseFloat(s, 64)
		if err != nil || back != v || math.Signbit(back) != math.Signbit(v) {
			t.Fatalf("PyFloat(%v) = %q reads back as %v (%v)", v, s, back, err)
		}
		abs := math.Abs(v)
		sci := abs != 0 && (abs < 1e-4 || abs >= 1e16)
		mant, exp, hasE := strings.Cut(s, "e")
		if hasE != sci {
			t.Fatalf("PyFloat(%v) = %q: scientific %v, want %v", v, s, hasE, sci)
		}
		if hasE {
			if len(exp) < 3 || (exp[0] != '+' && exp[0] != '-') {
				t.Fatalf("PyFloat(%v) = %q: exponent %q", v, s, exp)
			}
			if strings.HasSuffix(mant, ".0") || strings.HasSuffix(mant, ".") {
				t.Fatalf("PyFloat(%v) = %q: Python writes no trailing .0 in scientific notation", v, s)
			}
		} else if !strings.Contains(s, ".") || strings.HasSuffix(s, ".") {
			t.Fatalf("PyFloat(%v) = %q: no decimal point", v, s)
		}
		if strings.HasPrefix(strings.TrimPrefix(s, "-"), "0") && !strings.HasPrefix(strings.TrimPrefix(s, "-"), "0.") {
			t.Fatalf("PyFloat(%v) = %q: leading zero", v, s)
		}
		// Shortest: one significant digit less does not read back.
		digits := strings.TrimLeft(strings.ReplaceAll(strings.TrimPrefix(mant, "-"), ".", ""), "0")
		digits = strings.TrimRight(digits, "0")
		if len(digits) > 1 {
			short := strconv.FormatFloat(v, 'e', len(digits)-2, 64)
			if b, _ := strconv.ParseFloat(short, 64); b == v {
				t.Fatalf("PyFloat(%v) = %q is not the shortest: %s reads back too", v, s, short)
			}
		}
		n := pyNumber(v)
		if b, err := strconv.ParseFloat(n, 64); err != nil || b != v {
			t.Fatalf("pyNumber(%v) = %q reads back as %v (%v)", v, n, b, err)
		}
		if v == math.Trunc(v) && abs < 1e15 && strings.ContainsAny(n, ".e") {
			t.Fatalf("pyNumber(%v) = %q: a whole number is printed as an int", v, n)
		}
	})
}

// FuzzAggregate: asyncio's rule for the error create_connection raises
// when every attempt failed: the group with all_errors, the error itself
// when there is one, the first when all str() match, else one OSError
// "Multiple exceptions: ..." joining every text in order.
func FuzzAggregate(f *testing.F) {
	f.Add([]byte("a\x00a"), false, uint8(0))
	f.Add([]byte("a\x00b"), false, uint8(1))
	f.Add([]byte(""), true, uint8(2))
	f.Add([]byte("x"), true, uint8(3))
	f.Add([]byte{}, false, uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, allErrors bool, kinds uint8) {
		var errs []error
		var texts []string
		if len(data) > 0 || kinds&0x80 == 0 {
			for i, part := range strings.Split(string(data), "\x00") {
				if i >= 64 {
					break
				}
				var e error
				switch (int(kinds) + i) % 3 {
				case 0:
					e = &OSError{Errno: syscall.ECONNREFUSED, Text: part}
				case 1:
					e = &OSError{Text: part}
				default:
					e = errors.New(part)
				}
				errs = append(errs, e)
				texts = append(texts, e.Error())
			}
		}
		got := Aggregate(errs, allErrors)
		var me *MultiError
		var te *TimeoutError
		switch {
		case len(errs) == 0:
			if !errors.As(got, &te) || got.Error() != "create_connection failed" {
				t.Fatalf("no errors: %#v", got)
			}
		case allErrors:
			noun := "sub-exceptions"
			if len(errs) == 1 {
				noun = "sub-exception"
			}
			if !errors.As(got, &me) || !me.AllErrors || len(me.Errors) != len(errs) ||
				got.Error() != fmt.Sprintf("create_connection failed (%d %s)", len(errs), noun) {
				t.Fatalf("all_errors: %#v %q", got, got)
			}
			for i := range errs {
				if me.Errors[i] != errs[i] {
					t.Fatalf("all_errors: error %d is not the attempt's", i)
				}
			}
		case len(errs) == 1:
			if got != errs[0] {
				t.Fatalf("one error came back as %#v", got)
			}
		default:
			same := true
			for _, s := range texts {
				same = same && s == texts[0]
			}
			if same {
				if got != errs[0] {
					t.Fatalf("errors with the same text: got %#v, want the first", got)
				}
			} else if !errors.As(got, &me) || me.AllErrors || got.Error() != "Multiple exceptions: "+strings.Join(texts, ", ") {
				t.Fatalf("different errors: %#v %q", got, got)
			}
		}
	})
}
