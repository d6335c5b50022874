package core

// Interleave reorders addresses by family as RFC 8305 section 4 and asyncio's
// _interleave_addrinfos do. Addresses are grouped by family in order of first
// appearance; the first firstFamilyCount-1 entries of the first family go
// first; then the families take turns, skipping any that have run out.
// A count below 1 acts as 1.
func Interleave(infos []AddrInfo, firstFamilyCount int) []AddrInfo {
	var order []int
	groups := map[int][]AddrInfo{}
	for _, ai := range infos {
		if _, seen := groups[ai.Family]; !seen {
			order = append(order, ai.Family)
		}
		groups[ai.Family] = append(groups[ai.Family], ai)
	}
	out := make([]AddrInfo, 0, len(infos))
	if firstFamilyCount > 1 && len(order) > 0 {
		first := groups[order[0]]
		n := min(firstFamilyCount-1, len(first))
		out = append(out, first[:n]...)
		groups[order[0]] = first[n:]
	}
	for len(out) < len(infos) {
		for _, fam := range order {
			if g := groups[fam]; len(g) > 0 {
				out = append(out, g[0])
				groups[fam] = g[1:]
			}
		}
	}
	return out
}
