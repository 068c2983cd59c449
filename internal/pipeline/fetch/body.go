// body.go: what happens to a 2xx body before it is delivered: reading the streamed body
// (fasthttp hands it over unread, so the headers can be judged first) within MaxBodyBytes,
// gzip/deflate decoding bounded by MaxBodyBytes (so a compression bomb stops at the limit),
// the HTML check, and the expected MD5/size check.

package fetch

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/valyala/fasthttp"
)

// decodePool holds scratch buffers for decoded bodies. Buffers past pooledCap are left to
// the garbage collector so one huge body does not pin its memory in the pool.
var decodePool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

const pooledCap = 4 << 20

var errTooLarge = errors.New("decoded body over the limit")

// readBody reads resp's streamed body, at most MaxBodyBytes of it, into the response's own
// body buffer, and returns the number of bytes read off the network and "" or the failure
// reason (retry says whether another attempt may do better). A body over the limit is not
// read at all when its Content-Length says so. With Options.Budget, the body first takes
// its buffer's size from the budget into h (waiting, until deadline, while it does not fit):
// its Content-Length, or MaxBodyBytes when the length is unknown, trimmed to the buffer's
// size once read. h is empty again when the body fails.
func (f *Fetcher) readBody(ctx context.Context, deadline time.Time, resp *fasthttp.Response, h *bodyHold) (n int64, reason string, retry bool) {
	stream := resp.BodyStream()
	if stream == nil { // not streamed: already in the buffer (fasthttp's read-ahead, a few KiB)
		return int64(len(resp.Body())), h.acquire(ctx, deadline, f.opt.Budget, int64(cap(resp.Body()))), false
	}
	cl := resp.Header.ContentLength()
	if cl > 0 && int64(cl) > f.opt.MaxBodyBytes {
		resp.CloseBodyStream() // unread: fasthttp closes the connection
		return 0, ReasonTooLarge, false
	}
	bp := decodePool.Get().(*[]byte)
	dst := (*bp)[:0]
	want := f.opt.MaxBodyBytes + 1 // readLimited allocates at most limit+1 bytes
	if cl >= 0 {
		want = int64(cl) + 1
		if int64(cap(dst)) < want || (f.opt.Budget != nil && int64(cap(dst)) > want) {
			// The exact size at once: no doubling copies (the pool often holds the small
			// buffers that responses gave back), and under a budget no more than the body
			// to account for (a larger pooled buffer could exceed the budget by itself).
			dst = make([]byte, 0, want)
		}
	}
	if reason := h.acquire(ctx, deadline, f.opt.Budget, max(want, int64(cap(dst)))); reason != "" {
		resp.CloseBodyStream()
		putDecodeBuffer(bp, dst)
		return 0, reason, false
	}
	body, err := readLimited(stream, dst, f.opt.MaxBodyBytes)
	n = int64(len(body))
	if err != nil {
		resp.CloseBodyStream()
		putDecodeBuffer(bp, body)
		h.release()
		if err == errTooLarge {
			return n, ReasonTooLarge, false
		}
		reason, retry = classifyError(err)
		return n, reason, retry
	}
	resp.CloseBodyStream() // read to its end: the connection goes back to the pool
	h.trim(int64(cap(body)))
	putDecodeBuffer(bp, resp.SwapBody(body))
	return n, "", false
}

// bodyHold is what one body holds of Options.Budget; the zero value holds nothing.
type bodyHold struct {
	b *budget.Budget
	n int64
}

// acquire takes n bytes of b (nil: nothing to take) into h, waiting until deadline at the
// latest, and returns "" or the failure reason.
func (h *bodyHold) acquire(ctx context.Context, deadline time.Time, b *budget.Budget, n int64) string {
	if b == nil {
		return ""
	}
	h.b = b
	if b.TryAcquire(n) {
		h.n += n
		return ""
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var tooLarge *budget.TooLarge
	switch err := b.Acquire(wctx, n); {
	case err == nil:
		h.n += n
		return ""
	case errors.As(err, &tooLarge):
		return ReasonTooLarge
	case ctx.Err() != nil:
		return ReasonCanceled
	default:
		return ReasonTimeout
	}
}

// trim gives back what h holds beyond n bytes.
func (h *bodyHold) trim(n int64) {
	if h.n > n {
		h.b.Release(h.n - n)
		h.n = n
	}
}

// release gives back all h holds.
func (h *bodyHold) release() { h.trim(0) }

// discardBody ends a body the fetcher has no use for (an error page, a redirect): a short
// one of known length is read so the connection can be reused, any other is closed unread.
func discardBody(resp *fasthttp.Response) int64 {
	stream := resp.BodyStream()
	if stream == nil {
		return int64(len(resp.Body()))
	}
	var n int64
	if cl := resp.Header.ContentLength(); cl >= 0 && cl <= 64<<10 {
		n, _ = io.Copy(io.Discard, io.LimitReader(stream, int64(cl)+1))
	}
	resp.CloseBodyStream()
	return n
}

// checkBody decodes resp's body in place when it is gzip/deflate encoded and returns ""
// when the body may be delivered, or the failure reason (h is then empty).
func (f *Fetcher) checkBody(ctx context.Context, deadline time.Time, resp *fasthttp.Response, it *item.Item, h *bodyHold) (reason string) {
	defer func() {
		if reason != "" {
			h.release()
		}
	}()
	if reason := f.decodeBody(ctx, deadline, resp, h); reason != "" {
		return reason
	}
	body := resp.Body()
	if len(body) == 0 {
		return ReasonEmptyBody
	}
	if !f.opt.AcceptHTML && looksLikeHTML(resp.Header.ContentType(), body) {
		return ReasonNotImage
	}
	if want, ok := expectedMD5(it.MD5); ok {
		if got := md5.Sum(body); !bytes.Equal(got[:], want) {
			return ReasonMD5Mismatch
		}
	}
	if it.Size > 0 && int64(len(body)) != it.Size {
		return ReasonSizeMismatch
	}
	return ""
}

// decodeBody replaces a gzip/deflate body by its decoded bytes, at most MaxBodyBytes of them.
// The decoded buffer takes MaxBodyBytes from Options.Budget into h while it is written (the
// encoded bytes are alive meanwhile), and h ends holding the decoded buffer's size.
func (f *Fetcher) decodeBody(ctx context.Context, deadline time.Time, resp *fasthttp.Response, h *bodyHold) string {
	enc := bytes.ToLower(bytes.TrimSpace(resp.Header.ContentEncoding()))
	var open func(io.Reader) (io.Reader, error)
	switch string(enc) {
	case "", "identity":
		return ""
	case "gzip", "x-gzip":
		open = func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }
	case "deflate":
		open = openDeflate
	default:
		return ReasonBadEncoding
	}
	zr, err := open(bytes.NewReader(resp.Body()))
	if err != nil {
		return ReasonBadEncoding
	}
	bp := decodePool.Get().(*[]byte)
	if reason := h.acquire(ctx, deadline, f.opt.Budget, max(f.opt.MaxBodyBytes+1, int64(cap(*bp)))); reason != "" {
		putDecodeBuffer(bp, (*bp)[:0])
		return reason
	}
	decoded, err := readLimited(zr, (*bp)[:0], f.opt.MaxBodyBytes)
	if c, ok := zr.(io.Closer); ok {
		c.Close()
	}
	if err != nil {
		putDecodeBuffer(bp, decoded)
		if err == errTooLarge {
			return ReasonTooLarge
		}
		return ReasonBadEncoding
	}
	// The decoded bytes become the response's body and h keeps their buffer's size; the
	// raw bytes become scratch.
	h.trim(int64(cap(decoded)))
	putDecodeBuffer(bp, resp.SwapBody(decoded))
	resp.Header.Del(fasthttp.HeaderContentEncoding)
	return ""
}

func putDecodeBuffer(bp *[]byte, b []byte) {
	if cap(b) > pooledCap {
		b = make([]byte, 0, 256<<10)
	}
	*bp = b[:0]
	decodePool.Put(bp)
}

// openDeflate reads "deflate" bodies, which RFC 9110 defines as zlib-wrapped but some
// servers send as raw DEFLATE.
func openDeflate(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(2)
	// A zlib header: CM=8 in the low nibble and (CMF<<8|FLG) a multiple of 31.
	if len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// readLimited appends all of r to dst, failing with errTooLarge past limit bytes.
func readLimited(r io.Reader, dst []byte, limit int64) ([]byte, error) {
	for {
		if int64(len(dst)) > limit {
			return dst, errTooLarge
		}
		if len(dst) == cap(dst) {
			grow := max(cap(dst), 64<<10)
			if room := limit + 1 - int64(len(dst)); int64(grow) > room {
				grow = int(room) // never allocate past limit+1 bytes
			}
			dst = slices.Grow(dst, grow)
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			if int64(len(dst)) > limit {
				return dst, errTooLarge
			}
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// expectedMD5 decodes Item.MD5: base64 (Open Images' OriginalMD5) or 32 hex digits.
// Anything else is ignored rather than failing good images.
func expectedMD5(s string) ([]byte, bool) {
	if s == "" {
		return nil, false
	}
	if len(s) == 32 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == md5.Size {
			return b, true
		}
	}
	return nil, false
}

var imageMagics = [][]byte{
	{0xFF, 0xD8, 0xFF},          // JPEG
	[]byte("\x89PNG\r\n\x1a\n"), // PNG
	[]byte("GIF8"),              // GIF
	[]byte("RIFF"),              // WebP (RIFF....WEBP)
	[]byte("BM"),                // BMP
}

// looksLikeHTML: an HTML document, by its Content-Type (unless the bytes are plainly an
// image, as some servers mislabel them) or by its first bytes.
func looksLikeHTML(contentType, body []byte) bool {
	for _, m := range imageMagics {
		if bytes.HasPrefix(body, m) {
			return false
		}
	}
	ct := bytes.ToLower(bytes.TrimSpace(contentType))
	if bytes.HasPrefix(ct, []byte("text/html")) || bytes.HasPrefix(ct, []byte("application/xhtml")) {
		return true
	}
	head := body[:min(len(body), 512)]
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.ToLower(bytes.TrimLeft(head, " \t\r\n"))
	return bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html"))
}
