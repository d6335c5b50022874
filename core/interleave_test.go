package core

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// addrs builds addrinfos from names like "6a" or "4b": the digit picks the
// family, and the whole name is kept as the host so the order can be read
// back.
func addrs(names string) []AddrInfo {
	var out []AddrInfo
	for _, n := range strings.Fields(names) {
		fam := unix.AF_INET
		if n[0] == '6' {
			fam = unix.AF_INET6
		}
		out = append(out, AddrInfo{Family: fam, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
			Addr: SockAddr{Family: fam, Host: n}})
	}
	return out
}

func names(infos []AddrInfo) string {
	var s []string
	for _, ai := range infos {
		s = append(s, ai.Addr.Host)
	}
	return strings.Join(s, " ")
}

func TestInterleave(t *testing.T) {
	tests := []struct {
		in   string
		fafc int
		want string
	}{
		// Spec 3.6, first worked example.
		{"6a 6b 6c 4a 4b", 1, "6a 4a 6b 4b 6c"},
		{"6a 6b 6c 4a 4b", 2, "6a 6b 4a 6c 4b"},
		{"6a 6b 6c 4a 4b", 3, "6a 6b 6c 4a 4b"},
		{"6a 6b 6c 4a 4b", 5, "6a 6b 6c 4a 4b"},
		// Spec 3.6, mixed input.
		{"4a 6a 4b 4c 6b", 1, "4a 6a 4b 6b 4c"},
		{"4a 6a 4b 4c 6b", 2, "4a 4b 6a 4c 6b"},
		// 0 and negative act as 1 (spec 3.5).
		{"6a 6b 6c 4a 4b", 0, "6a 4a 6b 4b 6c"},
		{"6a 6b 6c 4a 4b", -3, "6a 4a 6b 4b 6c"},
		{"4a 6a 4b 4c 6b", 0, "4a 6a 4b 6b 4c"},
		// A count larger than the first group puts the whole group first.
		{"4a 6a 4b 6b", 100, "4a 4b 6a 6b"},
		// Edge cases.
		{"", 1, ""},
		{"", 3, ""},
		{"4a", 1, "4a"},
		{"4a 4b 4c", 1, "4a 4b 4c"},
		{"6a 6b 6c", 2, "6a 6b 6c"},
		{"6a 6b 6c", -1, "6a 6b 6c"},
		// The family that appears first leads, whatever it is.
		{"4a 4b 4c 6a", 1, "4a 6a 4b 4c"},
		{"6a 4a 4b 4c", 1, "6a 4a 4b 4c"},
	}
	for _, tc := range tests {
		in := addrs(tc.in)
		got := Interleave(in, tc.fafc)
		if names(got) != tc.want {
			t.Errorf("Interleave(%q, %d) = %q, want %q", tc.in, tc.fafc, names(got), tc.want)
		}
		if len(got) != len(in) {
			t.Errorf("Interleave(%q, %d) has %d entries, want %d", tc.in, tc.fafc, len(got), len(in))
		}
		if names(in) != tc.in {
			t.Errorf("Interleave(%q, %d) changed its input to %q", tc.in, tc.fafc, names(in))
		}
	}
}

// TestInterleaveThreeFamilies: families take turns in order of first
// appearance, skipping any that have run out.
func TestInterleaveThreeFamilies(t *testing.T) {
	in := []AddrInfo{
		{Family: unix.AF_INET, Addr: SockAddr{Host: "4a"}},
		{Family: unix.AF_UNIX, Addr: SockAddr{Host: "ua"}},
		{Family: unix.AF_INET, Addr: SockAddr{Host: "4b"}},
		{Family: unix.AF_INET6, Addr: SockAddr{Host: "6a"}},
		{Family: unix.AF_INET, Addr: SockAddr{Host: "4c"}},
		{Family: unix.AF_INET6, Addr: SockAddr{Host: "6b"}},
	}
	if got, want := names(Interleave(in, 1)), "4a ua 6a 4b 6b 4c"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
