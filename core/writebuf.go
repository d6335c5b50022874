package core

// writeBuffer holds the bytes write() could not send at once. write() copies
// the caller's data in (asyncio 3.11 semantics: changing the caller's buffer
// afterwards changes nothing), coalescing small writes so a burst of tiny
// writes does not become a long iovec list.
type writeBuffer struct {
	chunks [][]byte
	size   int
}

const (
	minChunk = 16 * 1024 // smallest chunk allocated for a small write
	maxIovec = 1024      // IOV_MAX on Linux
)

func (b *writeBuffer) empty() bool { return b.size == 0 }

func (b *writeBuffer) append(p []byte) {
	b.size += len(p)
	if n := len(b.chunks); n > 0 {
		last := b.chunks[n-1]
		if spare := cap(last) - len(last); spare > 0 {
			k := min(spare, len(p))
			b.chunks[n-1] = append(last, p[:k]...)
			p = p[k:]
		}
	}
	if len(p) == 0 {
		return
	}
	c := make([]byte, len(p), max(len(p), minChunk))
	copy(c, p)
	b.chunks = append(b.chunks, c)
}

// iovecs returns the chunks to pass to one sendmsg call.
func (b *writeBuffer) iovecs() [][]byte {
	if len(b.chunks) > maxIovec {
		return b.chunks[:maxIovec]
	}
	return b.chunks
}

// consume drops n sent bytes from the front.
func (b *writeBuffer) consume(n int) {
	b.size -= n
	for n > 0 {
		c := b.chunks[0]
		if n < len(c) {
			b.chunks[0] = c[n:]
			return
		}
		n -= len(c)
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
	}
	if len(b.chunks) == 0 {
		b.chunks = nil
	}
}

func (b *writeBuffer) clear() {
	b.chunks = nil
	b.size = 0
}
