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
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"sync"

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
// read at all when its Content-Length says so.
func (f *Fetcher) readBody(resp *fasthttp.Response) (n int64, reason string, retry bool) {
	stream := resp.BodyStream()
	if stream == nil { // not streamed: already in the buffer
		return int64(len(resp.Body())), "", false
	}
	if cl := resp.Header.ContentLength(); cl > 0 && int64(cl) > f.opt.MaxBodyBytes {
		resp.CloseBodyStream() // unread: fasthttp closes the connection
		return 0, ReasonTooLarge, false
	}
	bp := decodePool.Get().(*[]byte)
	body, err := readLimited(stream, (*bp)[:0], f.opt.MaxBodyBytes)
	n = int64(len(body))
	if err != nil {
		resp.CloseBodyStream()
		putDecodeBuffer(bp, body)
		if err == errTooLarge {
			return n, ReasonTooLarge, false
		}
		reason, retry = classifyError(err)
		return n, reason, retry
	}
	resp.CloseBodyStream() // read to its end: the connection goes back to the pool
	putDecodeBuffer(bp, resp.SwapBody(body))
	return n, "", false
}

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
// when the body may be delivered, or the failure reason.
func (f *Fetcher) checkBody(resp *fasthttp.Response, it *item.Item) string {
	if reason := f.decodeBody(resp); reason != "" {
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
func (f *Fetcher) decodeBody(resp *fasthttp.Response) string {
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
	// The decoded bytes become the response's body; the raw bytes become scratch.
	raw := resp.SwapBody(decoded)
	resp.Header.Del(fasthttp.HeaderContentEncoding)
	putDecodeBuffer(bp, raw)
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
