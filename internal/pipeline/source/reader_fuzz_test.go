// reader_fuzz_test.go: fuzz targets for the list readers (text, CSV, TSV, gzip, Google's
// TsvHttpData) and the Open Images CSV reader, and the checks every input must pass whatever
// its bytes: no panic or hang, one Record per row numbered 0, 1, 2, ..., items that are
// fetchable URLs (or local paths) and failures that are printable. `make fuzz` runs them.

package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// fuzzTimeout bounds one input: a reader that does not end within it has hung.
const fuzzTimeout = 10 * time.Second

// fuzzBaseDir is what a fuzzed local list's relative paths resolve against (never read).
const fuzzBaseDir = "/fuzz/lists"

// gzipBytes compresses b, for the gzipped seeds.
func gzipBytes(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// checkRecords drains s within fuzzTimeout and checks every Record against what Open
// promises, with maxURL the URL limit in force. It returns the items and failures.
func checkRecords(t *testing.T, s *Source, maxURL int) ([]Record, []*item.Failure) {
	t.Helper()
	var items []Record
	var fails []*item.Failure
	timer := time.NewTimer(fuzzTimeout)
	defer timer.Stop()
	var seq int64
	for {
		var rec Record
		var ok bool
		select {
		case rec, ok = <-s.Records():
		case <-timer.C:
			t.Fatalf("no Record and no end within %v (after %d records)", fuzzTimeout, seq)
		}
		if !ok {
			break
		}
		if f := rec.Failure; f != nil {
			if f.Seq != seq || f.Stage != "source" || f.Reason == "" {
				t.Fatalf("failure %d: seq %d, stage %q, reason %q", seq, f.Seq, f.Stage, f.Reason)
			}
			for what, v := range map[string]string{"URL": f.URL, "ImageID": f.ImageID} {
				if !utf8.ValidString(v) || len(v) > 1024+len("...") {
					t.Fatalf("failure %d: %s is not printable (%d bytes, valid UTF-8 %v)", seq, what, len(v), utf8.ValidString(v))
				}
			}
			fails = append(fails, f)
		} else {
			checkItem(t, rec, seq, maxURL)
			items = append(items, rec)
		}
		seq++
	}
	st := s.Stats()
	if st.Items != int64(len(items)) || st.Failures != int64(len(fails)) || st.Rows != st.Items+st.Failures+st.OtherShards {
		t.Fatalf("stats %+v after %d items and %d failures", st, len(items), len(fails))
	}
	return items, fails
}

// checkItem checks one item: a local absolute path, an http(s) URL the fetcher can take, or,
// for a Record carrying its image (a tar sample), any printable name.
func checkItem(t *testing.T, rec Record, seq int64, maxURL int) {
	t.Helper()
	it := rec.Item
	u := it.URL
	if it.Seq != seq || it.Line <= 0 || u == "" || !utf8.ValidString(u) || !utf8.ValidString(it.ImageID) || it.Size < 0 {
		t.Fatalf("item %d: %+v", seq, it)
	}
	if (it.MD5 != "" && len(it.MD5) != 24) || len(u) > max(maxURL, 4096) && !it.Local() {
		t.Fatalf("item %d: MD5 %q, URL of %d bytes", seq, it.MD5, len(u))
	}
	for k, v := range it.Columns {
		if !utf8.ValidString(v) {
			t.Fatalf("item %d: column %s holds invalid UTF-8 %q", seq, k, v)
		}
	}
	if !utf8.ValidString(it.Text) { // the tokenizer refuses invalid UTF-8: it would stop the run
		t.Fatalf("item %d: text %q is not valid UTF-8", seq, it.Text)
	}
	if it.Local() || rec.Body != nil {
		return
	}
	lower := strings.ToLower(u)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		t.Fatalf("item %d: URL %q is neither http(s) nor a local path", seq, u)
	}
	if strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		t.Fatalf("item %d: URL %q holds a space or a control character", seq, u)
	}
}

// listSeeds are list inputs in the shapes users give: plain lists, CSV and TSV with quoting,
// Open Images' header, Google's TsvHttpData, local paths, and the malformed rows the tests
// know.
func listSeeds(tb testing.TB) [][]byte {
	text := []string{
		"\xef\xbb\xbfhttps://a.example/1.jpg\r\n\n  # a comment\n\t\nhttp://b.example/2.png  \n#https://skipped.example/\nHTTPS://c.example/3\n",
		"url,caption\nhttps://a.example/1.jpg,\"a cat, \"\"sitting\"\"\"\n\"https://b.example/2.jpg\",\"two\nlines\"\nftp://x/y,z\n,empty\n",
		"url\tcaption\nhttps://a.example/1.jpg\tone\n\"https://b.example/2.jpg\"\ttwo\n\tnone\n",
		"TsvHttpData-1.0\nhttps://a.example/1.jpg\t1234\tKFukvivpCM5QXl5SqKe41g==\nhttps://b.example/2.jpg\tx\tbad\n",
		oiHeader + "\n" + oiRows,
		openImagesCSV(12, "validation"),
		"photos/a.jpg\n/abs/b.png\nfile:///abs/c.jpg\nfile://otherhost/d.jpg\nhttps://e.example/e.jpg\n",
		"url,id\n\"https://a.example/1.jpg\nhttps://b.example/2.jpg,3\nhttps://c.example/3.jpg,4\n",
		"id,url\n1\n2,https://a.example/\xff.jpg\n3,https://a.example/ b.jpg\n4,https:///nohost\n5,mailto:x@y\n",
	}
	var seeds [][]byte
	for _, s := range text {
		seeds = append(seeds, []byte(s), gzipBytes(tb, []byte(s)))
	}
	return seeds
}

// FuzzListReader reads arbitrary bytes as a list. mode picks the name (which the format
// rule looks at), the format option, and whether rows may name local files.
func FuzzListReader(f *testing.F) {
	for i, s := range listSeeds(f) {
		f.Add(s, uint8(i))
	}
	// With a text column (mode 32), as list.csv read as CSV: invalid UTF-8 in a caption.
	f.Add([]byte("url,caption\nhttps://a.example/1.jpg,\"a \xffcat\"\nhttps://a.example/2.jpg\n"), uint8(32|2<<2|2))
	names := []string{"list", "list.txt", "list.csv", "list.tsv"}
	formats := []Format{FormatAuto, FormatText, FormatCSV, FormatTSV}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		name := names[mode&3]
		opt := Options{Format: formats[mode>>2&3], MaxURLBytes: 512, Buffer: 16}
		if mode&32 != 0 {
			opt.TextColumn = "caption" // a header without it is an error from Open
		}
		cfg := rowConfig{totalBytes: -1}
		if mode&16 != 0 {
			cfg.baseDir = fuzzBaseDir
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzTimeout)
		defer cancel()
		s, err := start(ctx, io.NopCloser(bytes.NewReader(data)), name, name, opt, cfg)
		if err != nil {
			return // a bad header (or a bad gzip start) is an error from Open
		}
		defer s.Close()
		checkRecords(t, s, opt.MaxURLBytes)
		if err := s.Err(); err != nil && !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			t.Fatalf("Err %v from bytes in memory that are not gzip", err)
		}
	})
}

// FuzzOpenImagesCSV reads arbitrary bytes as an Open Images metadata CSV, as openimages:SPLIT
// does once the file is in the cache, for each URL kind (original, thumbnail, mirror).
func FuzzOpenImagesCSV(f *testing.F) {
	seeds := [][]byte{
		[]byte(oiHeader + "\n" + oiRows),
		[]byte(openImagesCSV(20, "validation")),
		gzipBytes(f, []byte(openImagesCSV(8, "test"))),
		[]byte(oiHeader + "\n0123456789abcdef,validation,https://a.example/o.jpg,,,,,,12,short,,0\n../../etc,test,,,,,,,,,,\n"),
	}
	for i, s := range seeds {
		f.Add(s, uint8(i))
	}
	const mirror = "https://mirror.example/validation/"
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		cfg := rowConfig{format: FormatCSV, urlColumn: "OriginalURL", cached: "validation.csv", totalBytes: int64(len(data))}
		switch kind % 3 {
		case 1:
			cfg.urlColumn = "Thumbnail300KURL"
		case 2:
			cfg.urlColumn, cfg.mirrorPrefix = "ImageID", mirror
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzTimeout)
		defer cancel()
		spec := "openimages:validation"
		s, err := start(ctx, io.NopCloser(bytes.NewReader(data)), spec, "validation.csv", Options{Buffer: 16}, cfg)
		if err != nil {
			return
		}
		defer s.Close()
		items, _ := checkRecords(t, s, DefaultMaxURLBytes)
		for _, rec := range items {
			it := rec.Item
			if rec.Body != nil {
				t.Fatalf("item %q of a list carries a body", it.URL)
			}
			if cfg.mirrorPrefix != "" && (it.URL != mirror+it.ImageID+".jpg" || checkID([]byte(it.ImageID)) != "") {
				t.Fatalf("mirror item %q for ImageID %q", it.URL, it.ImageID)
			}
		}
	})
}
