package core

// Fuzz tests of address interleaving (interleave.go) and of the merge of
// late addresses into a running race (mergeArrivals, race.go).

import (
	"math"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzFamilies are the families an input byte picks from: asyncio's
// interleave works for any number of families, so two odd ones are there
// too.
var fuzzFamilies = []int{unix.AF_INET6, unix.AF_INET, unix.AF_UNIX, 42}

// fuzzInfos makes one address per input byte. The port is the address's
// position in the input, so every address can be told apart after a
// reordering.
func fuzzInfos(fams []byte, nfam int) []AddrInfo {
	infos := make([]AddrInfo, len(fams))
	for i, b := range fams {
		f := fuzzFamilies[int(b)%nfam]
		infos[i] = AddrInfo{Family: f, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
			Addr: SockAddr{Family: f, Port: i}}
	}
	return infos
}

// pyInterleave is asyncio's _interleave_addrinfos, written out the way the
// Python code reads: group by family in order of first appearance, take
// first_address_family_count-1 of the first group, then
// itertools.zip_longest over the groups, dropping the Nones.
func pyInterleave(infos []AddrInfo, fafc int) []AddrInfo {
	var lists [][]AddrInfo
	index := map[int]int{}
	for _, ai := range infos {
		i, ok := index[ai.Family]
		if !ok {
			i = len(lists)
			index[ai.Family] = i
			lists = append(lists, nil)
		}
		lists[i] = append(lists[i], ai)
	}
	var out []AddrInfo
	if fafc > 1 && len(lists) > 0 {
		n := min(fafc-1, len(lists[0]))
		out = append(out, lists[0][:n]...)
		lists[0] = lists[0][n:]
	}
	longest := 0
	for _, l := range lists {
		longest = max(longest, len(l))
	}
	for k := 0; k < longest; k++ {
		for _, l := range lists {
			if k < len(l) {
				out = append(out, l[k])
			}
		}
	}
	return out
}

func infoPorts(infos []AddrInfo) []int {
	p := make([]int, len(infos))
	for i, ai := range infos {
		p[i] = ai.Addr.Port
	}
	return p
}

// checkPermutation: out holds exactly the addresses of in (each once), and
// the addresses of each family keep their relative order.
func checkPermutation(t *testing.T, what string, in, out []AddrInfo) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("%s: %d addresses in, %d out", what, len(in), len(out))
	}
	seen := map[int]int{}
	for _, ai := range in {
		seen[ai.Addr.Port]++
	}
	for _, ai := range out {
		seen[ai.Addr.Port]--
	}
	for port, n := range seen {
		if n != 0 {
			t.Fatalf("%s: address %d appears %d more times in the input than in the output\nin  %v\nout %v",
				what, port, n, infoPorts(in), infoPorts(out))
		}
	}
	perFamily := func(infos []AddrInfo) map[int][]int {
		m := map[int][]int{}
		for _, ai := range infos {
			m[ai.Family] = append(m[ai.Family], ai.Addr.Port)
		}
		return m
	}
	want, got := perFamily(in), perFamily(out)
	for fam, ports := range want {
		if !slices.Equal(ports, got[fam]) {
			t.Fatalf("%s: family %d order changed: in %v, out %v", what, fam, ports, got[fam])
		}
	}
}

func FuzzInterleave(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1}, 1, uint8(2))
	f.Add([]byte{0, 0, 0, 1, 1}, 2, uint8(2))
	f.Add([]byte{1, 0, 1, 1, 0}, 3, uint8(2))
	f.Add([]byte{}, 1, uint8(2))
	f.Add([]byte{0, 1, 2, 3, 3, 2, 1, 0, 0}, 0, uint8(4))
	f.Add([]byte{1, 1, 1}, math.MaxInt, uint8(2))
	f.Add([]byte{1, 0, 1}, math.MinInt, uint8(3))
	f.Fuzz(func(t *testing.T, fams []byte, fafc int, nfam uint8) {
		if len(fams) > 512 {
			fams = fams[:512]
		}
		n := 1 + int(nfam)%len(fuzzFamilies)
		in := fuzzInfos(fams, n)
		orig := slices.Clone(in)
		out := Interleave(in, fafc)

		if !slices.Equal(infoPorts(in), infoPorts(orig)) {
			t.Fatalf("Interleave changed its input: %v became %v", infoPorts(orig), infoPorts(in))
		}
		checkPermutation(t, "Interleave", in, out)

		// The first family comes first: min(fafc, its count) of its
		// addresses lead (a count below 1 acts as 1), and after that the
		// families take turns.
		if len(in) > 0 {
			first := in[0].Family
			count := 0
			for _, ai := range in {
				if ai.Family == first {
					count++
				}
			}
			lead := min(max(fafc, 1), count)
			for i := 0; i < lead; i++ {
				if out[i].Family != first {
					t.Fatalf("fafc %d: address %d of the output is family %d, want the first family %d\nin  %v\nout %v",
						fafc, i, out[i].Family, first, infoPorts(in), infoPorts(out))
				}
			}
		}
		// Exactly asyncio's order.
		if want := pyInterleave(in, fafc); !slices.Equal(infoPorts(out), infoPorts(want)) {
			t.Fatalf("fafc %d: Interleave gives %v, asyncio gives %v", fafc, infoPorts(out), infoPorts(want))
		}
	})
}

// FuzzMergeArrivals: addresses that arrive during the race join those not
// yet tried; nothing is lost or duplicated, each family keeps its order, and
// the family of the attempt that started last does not go next when the
// other family has an address.
func FuzzMergeArrivals(f *testing.F) {
	f.Add([]byte{0, 0}, []byte{1, 1, 1}, uint8(0))
	f.Add([]byte{1}, []byte{0, 0}, uint8(1))
	f.Add([]byte{}, []byte{0, 1}, uint8(2))
	f.Add([]byte{0, 1, 0}, []byte{}, uint8(1))
	f.Fuzz(func(t *testing.T, pend, batch []byte, last uint8) {
		if len(pend) > 256 {
			pend = pend[:256]
		}
		if len(batch) > 256 {
			batch = batch[:256]
		}
		all := fuzzInfos(append(append([]byte(nil), pend...), batch...), 2)
		pending, arriving := all[:len(pend)], all[len(pend):]
		lastFamily := []int{0, unix.AF_INET6, unix.AF_INET}[int(last)%3]
		origPending := slices.Clone(pending)

		out := mergeArrivals(pending, arriving, lastFamily)
		if !slices.Equal(infoPorts(pending), infoPorts(origPending)) {
			t.Fatalf("mergeArrivals changed pending")
		}
		checkPermutation(t, "mergeArrivals", all, out)

		if lastFamily != 0 && len(out) > 0 && out[0].Family == lastFamily {
			for _, ai := range all {
				if ai.Family != lastFamily {
					t.Fatalf("last family %d goes first although family %d has an address: %v",
						lastFamily, ai.Family, infoPorts(out))
				}
			}
		}
		// Two families alternate as long as both have addresses left.
		counts := map[int]int{}
		for _, ai := range out {
			counts[ai.Family]++
		}
		if len(counts) == 2 {
			alternating := 2 * min(counts[unix.AF_INET], counts[unix.AF_INET6])
			for i := 1; i < alternating; i++ {
				if out[i].Family == out[i-1].Family {
					t.Fatalf("addresses %d and %d are both family %d before either family ran out: %v",
						i-1, i, out[i].Family, infoPorts(out))
				}
			}
		}
	})
}
