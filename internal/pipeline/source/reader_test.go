// reader_test.go: every input format, the format rule, headers, gzip, malformed rows (reason
// and line number), limit, stats, and stopping early.

package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	in := "\xef\xbb\xbfhttps://a.example/1.jpg\r\n\n  # a comment\n\t\nhttp://b.example/2.png  \n#https://skipped.example/\nHTTPS://c.example/3\n"
	s := fromString(t, in, "list", Options{})
	if s.Info().Format != FormatText {
		t.Fatalf("format %q, want text", s.Info().Format)
	}
	items, fails := drain(t, s)
	want := []string{"https://a.example/1.jpg", "http://b.example/2.png", "HTTPS://c.example/3"}
	if !slices.Equal(urls(items), want) || len(fails) != 0 {
		t.Fatalf("got %q, %v; want %q", urls(items), fails, want)
	}
	for i, line := range []int64{1, 5, 7} {
		if items[i].Line != line || items[i].Seq != int64(i) {
			t.Errorf("item %d: line %d seq %d; want line %d seq %d", i, items[i].Line, items[i].Seq, line, i)
		}
	}
	if st := s.Stats(); st.Rows != 3 || st.Items != 3 || st.Failures != 0 || st.Bytes <= 0 {
		t.Errorf("stats %+v", st)
	}
}

const oiHeader = "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,OriginalSize,OriginalMD5,Thumbnail300KURL,Rotation"

// Two rows in the real file's shape (the first from the Open Images train-boxable list).
const oiRows = `4fa8054781a4c382,train,https://farm3.staticflickr.com/5310/5898076654_51085e157c_o.jpg,https://www.flickr.com/photos/michael-beat/5898076654,https://creativecommons.org/licenses/by/2.0/,https://www.flickr.com/people/michael-beat/,Michael Beat,...die FNF-Kerze,4405052,KFukvivpCM5QXl5SqKe41g==,https://c1.staticflickr.com/6/5310/5898076654_00643a940c_z.jpg,0.0
b37f763ae67d0888,train,https://c1.staticflickr.com/1/67/197493648_628a7cb2ee_o.jpg,https://www.flickr.com/photos/drstarbuck/197493648,https://creativecommons.org/licenses/by/2.0/,https://www.flickr.com/people/drstarbuck/,Karen,"Three boys, ""on"" a
hill",494555,9IzEn38GRNsVpATuv7gzEA==,,nan
`

func TestCSVOpenImagesShape(t *testing.T) {
	s := fromString(t, oiHeader+"\n"+oiRows, "x.csv", Options{})
	info := s.Info()
	if info.Format != FormatCSV || info.URLColumn != "OriginalURL" || info.IDColumn != "ImageID" || len(info.Columns) != 12 {
		t.Fatalf("info %+v", info)
	}
	items, fails := drain(t, s)
	if len(fails) != 0 || len(items) != 2 {
		t.Fatalf("items %v failures %v", items, fails)
	}
	first := items[0]
	if first.ImageID != "4fa8054781a4c382" || first.URL != "https://farm3.staticflickr.com/5310/5898076654_51085e157c_o.jpg" ||
		first.MD5 != "KFukvivpCM5QXl5SqKe41g==" || first.Size != 4405052 || first.Line != 2 {
		t.Errorf("first item %+v", first)
	}
	// The second row's quoted Title spans two lines; its number is where it starts.
	if items[1].Line != 3 || items[1].Size != 494555 || items[1].ImageID != "b37f763ae67d0888" {
		t.Errorf("second item %+v", items[1])
	}
}

func TestCSVThumbnailColumn(t *testing.T) {
	s := fromString(t, oiHeader+"\n"+oiRows, "x.csv", Options{URLColumn: "thumbnail300kurl"})
	items, fails := drain(t, s)
	if len(items) != 1 || items[0].URL != "https://c1.staticflickr.com/6/5310/5898076654_00643a940c_z.jpg" {
		t.Fatalf("items %+v", items)
	}
	if items[0].MD5 != "" || items[0].Size != 0 {
		t.Errorf("a thumbnail must not carry the original's MD5/size: %+v", items[0])
	}
	if len(fails) != 1 || fails[0].Reason != "line 3: no thumbnail URL" || fails[0].ImageID != "b37f763ae67d0888" || fails[0].Line != 3 {
		t.Fatalf("failures %+v", fails)
	}
}

func TestHeaderColumns(t *testing.T) {
	cases := []struct {
		name, header, row, opt string
		wantURL, wantID, col   string
	}{
		{"lower url", "id,url", "7,https://x/1", "", "https://x/1", "7", "url"},
		{"upper URL", "URL,other", "https://x/2,z", "", "https://x/2", "", "URL"},
		{"url wins over OriginalURL", "OriginalURL,url", "https://x/o,https://x/u", "", "https://x/u", "", "url"},
		{"OriginalURL over thumbnail", "Thumbnail300KURL,OriginalURL,ImageID", "https://x/t,https://x/o,abc", "", "https://x/o", "abc", "OriginalURL"},
		{"thumbnail alone", "Thumbnail300KURL,image_id", "https://x/t,q", "", "https://x/t", "q", "Thumbnail300KURL"},
		{"named column", "a,link,b", "1,https://x/l,2", "link", "https://x/l", "", "link"},
		{"spaces and quotes", ` "url" , "ImageID"`, `"https://x/q" , " id9 "`, "", "https://x/q", "id9", "url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := fromString(t, c.header+"\n"+c.row+"\n", "f.csv", Options{URLColumn: c.opt})
			items, fails := drain(t, s)
			if len(fails) != 0 || len(items) != 1 {
				t.Fatalf("items %v failures %v", items, fails)
			}
			if items[0].URL != c.wantURL || items[0].ImageID != c.wantID || s.Info().URLColumn != c.col {
				t.Errorf("got %+v column %q; want url %q id %q column %q", items[0], s.Info().URLColumn, c.wantURL, c.wantID, c.col)
			}
		})
	}
}

func TestMissingURLColumnIsFatal(t *testing.T) {
	_, err := New(testContext(t), strings.NewReader("name,link\na,https://x/1\n"), "f.csv", Options{})
	if err == nil || !strings.Contains(err.Error(), `"name", "link"`) || !strings.Contains(err.Error(), "no URL column") {
		t.Fatalf("err = %v; want a fatal error naming the columns found", err)
	}
	_, err = New(testContext(t), strings.NewReader("name,link\n"), "f.csv", Options{URLColumn: "href"})
	if err == nil || !strings.Contains(err.Error(), `no column "href"`) || !strings.Contains(err.Error(), `"link"`) {
		t.Fatalf("err = %v; want it to name the missing column and those found", err)
	}
	_, err = New(testContext(t), strings.NewReader("\"url,id\n"), "f.csv", Options{})
	if err == nil || !strings.Contains(err.Error(), "line 1: the header") {
		t.Fatalf("err = %v; want a header quoting error", err)
	}
}

func TestTSV(t *testing.T) {
	in := "ImageID\tURL\tnote\nab\thttps://x/1\tsays \"hi\"\ncd\thttps://x/2\n"
	items, fails := drain(t, fromString(t, in, "f.tsv", Options{}))
	if len(fails) != 0 || !slices.Equal(urls(items), []string{"https://x/1", "https://x/2"}) || items[1].ImageID != "cd" {
		t.Fatalf("items %+v failures %v", items, fails)
	}
}

func TestTsvHTTPData(t *testing.T) {
	in := "TsvHttpData-1.0\nhttps://x/a.jpg\t4405052\tKFukvivpCM5QXl5SqKe41g==\nhttps://x/b.jpg\n"
	s := fromString(t, in, "images.tsv", Options{})
	items, fails := drain(t, s)
	if len(fails) != 0 || len(items) != 2 {
		t.Fatalf("items %+v failures %v", items, fails)
	}
	if items[0].Size != 4405052 || items[0].MD5 != "KFukvivpCM5QXl5SqKe41g==" || items[1].Size != 0 {
		t.Errorf("items %+v", items)
	}
}

func TestDetectFormat(t *testing.T) {
	cases := []struct {
		first, name string
		want        Format
	}{
		{"https://x/1", "list.csv", FormatText}, // a headerless list, whatever the name
		{"# urls, one a line", "list", FormatText},
		{"url", "list.csv", FormatCSV},
		{"url", "list.CSV.gz", FormatCSV},
		{"url", "list.tsv", FormatTSV},
		{"url", "list.tab", FormatTSV},
		{"url,id", "list.txt", FormatText},
		{"url\tid", "", FormatTSV},
		{"url,id", "https://h/list?format=x", FormatCSV},
		{"url", "", FormatText},
	}
	for _, c := range cases {
		if got := detectFormat(c.first, c.name); got != c.want {
			t.Errorf("detectFormat(%q, %q) = %q, want %q", c.first, c.name, got, c.want)
		}
	}
	// Forced format: a comma list read as text keeps the line whole.
	items, fails := drain(t, fromString(t, "url,id\nhttps://x/1,2\n", "f.csv", Options{Format: FormatText}))
	if len(items) != 1 || items[0].URL != "https://x/1,2" || len(fails) != 1 {
		t.Errorf("forced text: items %+v failures %+v", items, fails)
	}
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGzipByMagic(t *testing.T) {
	dir := t.TempDir()
	// The name says nothing about compression; the bytes do.
	p := filepath.Join(dir, "urls.csv")
	if err := os.WriteFile(p, gzipped(t, "url,ImageID\nhttps://x/1,a\nhttps://x/2,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(testContext(t), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Info().Gzip || s.Info().Format != FormatCSV {
		t.Fatalf("info %+v", s.Info())
	}
	items, _ := drain(t, s)
	if !slices.Equal(urls(items), []string{"https://x/1", "https://x/2"}) {
		t.Fatalf("items %+v", items)
	}
	// A .gz plain list, format from the content.
	p2 := filepath.Join(dir, "list.gz")
	os.WriteFile(p2, gzipped(t, "https://x/3\n"), 0o644)
	s2, err := Open(testContext(t), p2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	items, _ = drain(t, s2)
	if len(items) != 1 || items[0].URL != "https://x/3" {
		t.Fatalf("items %+v", items)
	}
	// A truncated gzip stream is an error at the end, after the rows that were readable.
	whole := gzipped(t, strings.Repeat("https://x/long/path/to/an/image.jpg\n", 20000))
	s3, err := New(testContext(t), bytes.NewReader(whole[:len(whole)/2]), "l.txt", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, _ = drainErr(s3)
	if err := s3.Err(); err == nil || !strings.Contains(err.Error(), "ended in the middle") || len(items) == 0 {
		t.Fatalf("truncated gzip: %d items, err %v", len(items), err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := testContext(t)
	for spec, want := range map[string]string{
		"/nonexistent/urls.txt": "no such file",
		"ftp://x/list.txt":      "unsupported scheme",
		"openimages:nope":       "unknown Open Images split",
	} {
		if _, err := Open(ctx, spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want %q", spec, err, want)
		}
	}
	if _, err := Open(ctx, "x.txt", Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("bad format: %v", err)
	}
	if _, err := Open(ctx, "x.txt", Options{Shard: Shard{3, 2}}); err == nil {
		t.Errorf("bad shard accepted")
	}
}

func TestEmptyInput(t *testing.T) {
	for _, name := range []string{"e.txt", "e.csv", "e.tsv"} {
		items, fails := drain(t, fromString(t, "\n\n", name, Options{}))
		if len(items)+len(fails) != 0 {
			t.Errorf("%s: %v %v", name, items, fails)
		}
	}
}

// Every malformed row is a failure with its line number and reason; the rows around it are
// read normally.
func TestMalformedRows(t *testing.T) {
	long := "https://x/" + strings.Repeat("a", 9000)
	csv := strings.Join([]string{
		"ImageID,url,extra",           // 1
		"a,https://ok.example/1,x",    // 2
		`b,"https://x/q"z,x`,          // 3 text after a closing quote
		`c,https://x/"q",x`,           // 4 quote inside an unquoted field
		"d",                           // 5 missing column
		"e,ftp://x/f.jpg,x",           // 6 scheme
		"f,mailto:me@x,x",             // 7 scheme without //
		"g," + long + ",x",            // 8 over-long URL
		"h,https://x/\xff\xfe.jpg,x",  // 9 invalid UTF-8
		"i,,x",                        // 10 empty URL
		"j,https:///nohost,x",         // 11 no host
		"k,https://x/a b.jpg,x",       // 12 space
		"l,/relative/path.jpg,x",      // 13 not absolute
		"\xffm,https://ok.example/,x", // 14 bad ImageID bytes
		"n,https://ok.example/2,x",    // 15
	}, "\n")
	items, fails := drain(t, fromString(t, csv, "bad.csv", Options{}))
	if !slices.Equal(urls(items), []string{"https://ok.example/1", "https://ok.example/2"}) || items[1].Line != 15 {
		t.Fatalf("items %+v", items)
	}
	want := []string{
		"line 3: bad quoting: text after the closing quote of field 2",
		"line 4: bad quoting: a quote inside unquoted field 2",
		"line 5: missing column url (the row has 1 fields, the header 3)",
		`line 6: unsupported scheme "ftp" (want http, https or s3)`,
		`line 7: unsupported scheme "mailto" (want http, https or s3)`,
		"line 8: URL is 9010 bytes, over the 8192-byte limit",
		"line 9: invalid UTF-8 in the URL",
		"line 10: empty URL",
		"line 11: URL has no host",
		"line 12: URL contains a space or a control character",
		"line 13: not an absolute http(s) URL",
		"line 14: invalid UTF-8 in the ImageID",
	}
	var got []string
	for _, f := range fails {
		got = append(got, f.Reason)
		if f.Stage != "source" {
			t.Errorf("stage %q", f.Stage)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reasons:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Failures keep what could be read, valid UTF-8 and bounded, and take Seq positions too.
	if fails[3].URL != "ftp://x/f.jpg" || fails[3].ImageID != "e" || fails[3].Line != 6 {
		t.Errorf("failure %+v", fails[3])
	}
	if len(fails[5].URL) > 1100 || !strings.HasPrefix(fails[5].URL, "https://x/aaa") {
		t.Errorf("over-long URL kept as %d bytes", len(fails[5].URL))
	}
	if fails[6].URL != "https://x/\uFFFD.jpg" {
		t.Errorf("invalid UTF-8 URL stored as %q", fails[6].URL)
	}
	seqs := map[int64]bool{}
	for _, it := range items {
		seqs[it.Seq] = true
	}
	for _, f := range fails {
		seqs[f.Seq] = true
	}
	if len(seqs) != 14 || !seqs[0] || !seqs[13] {
		t.Errorf("Seq must number items and failures 0..13 once each: %v", seqs)
	}
}

// A quote that never closes is one failure at its line; the lines it swallowed are read
// again as rows, so nothing after it is lost.
func TestUnterminatedQuoteResyncs(t *testing.T) {
	var b strings.Builder
	b.WriteString("url,title\n")
	b.WriteString("https://x/0,\"never closed\n") // line 2
	for i := 1; i <= 40; i++ {
		b.WriteString("https://x/" + strings.Repeat("n", i) + ",t\n")
	}
	items, fails := drain(t, fromString(t, b.String(), "f.csv", Options{}))
	if len(fails) != 1 || fails[0].Reason != "line 2: bad quoting: a quoted field is not closed" {
		t.Fatalf("failures %+v", fails)
	}
	if len(items) != 40 || items[0].Line != 3 || items[39].Line != 42 {
		t.Fatalf("%d items, first line %d", len(items), items[0].Line)
	}
	// Closed on a later line within the bound: one record.
	items, fails = drain(t, fromString(t, "url,title\nhttps://x/1,\"a\nb\nc\"\nhttps://x/2,t\n", "f.csv", Options{}))
	if len(items) != 2 || len(fails) != 0 || items[1].Line != 5 {
		t.Fatalf("items %+v failures %+v", items, fails)
	}
}

func TestOverlongLine(t *testing.T) {
	in := "https://x/1\n" + "https://x/" + strings.Repeat("z", 300<<10) + "\nhttps://x/2\n"
	items, fails := drain(t, fromString(t, in, "l.txt", Options{}))
	if !slices.Equal(urls(items), []string{"https://x/1", "https://x/2"}) || items[1].Line != 3 {
		t.Fatalf("items %+v", items)
	}
	if len(fails) != 1 || fails[0].Reason != "line 2: line longer than 256 KiB" {
		t.Fatalf("failures %+v", fails)
	}
}

func TestLimit(t *testing.T) {
	var lines []string
	for i := 0; i < 100; i++ {
		lines = append(lines, "https://x/"+strings.Repeat("i", i+1))
		if i%10 == 5 {
			lines = append(lines, "ftp://bad/"+strings.Repeat("i", i+1))
		}
	}
	in := strings.Join(lines, "\n")
	s := fromString(t, in, "l.txt", Options{Limit: 25})
	items, fails := drain(t, s)
	if len(items) != 25 || items[24].URL != "https://x/"+strings.Repeat("i", 25) {
		t.Fatalf("%d items, last %+v", len(items), items[len(items)-1])
	}
	if len(fails) != 2 { // after rows 5 and 15; the one after row 25 is past the limit
		t.Errorf("%d failures before the limit; want 2", len(fails))
	}
	// Limit applies after sharding.
	all, _ := drain(t, fromString(t, in, "l.txt", Options{Shard: Shard{1, 3}}))
	lim, _ := drain(t, fromString(t, in, "l.txt", Options{Shard: Shard{1, 3}, Limit: 5}))
	if !slices.Equal(urls(lim), urls(all)[:5]) {
		t.Errorf("limited shard %q; want the shard's first five %q", urls(lim), urls(all)[:5])
	}
}

// Close without draining returns, releases the input, and Err is nil; cancelling the context
// ends the stream with the context's error.
func TestStopEarly(t *testing.T) {
	in := strings.Repeat("https://x/y.jpg\n", 100000)
	rc := &closeRecorder{Reader: strings.NewReader(in)}
	s, err := New(testContext(t), rc, "l.txt", Options{Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	<-s.Records()
	s.Close()
	s.Close()
	if !rc.closed {
		t.Error("input not closed")
	}
	if s.Err() != nil {
		t.Errorf("Err after Close = %v", s.Err())
	}
	for range s.Records() {
	}

	ctx, cancel := context.WithCancel(testContext(t))
	s, err = New(ctx, strings.NewReader(in), "l.txt", Options{Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	<-s.Records()
	cancel()
	drainErr(s)
	if !errors.Is(s.Err(), context.Canceled) {
		t.Errorf("Err after cancel = %v", s.Err())
	}
}

type closeRecorder struct {
	*strings.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestLocalFileAndStats(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l.txt")
	os.WriteFile(p, []byte("https://x/1\nbad\nhttps://x/2\nhttps://x/3\n"), 0o644)
	s, err := Open(testContext(t), p, Options{Shard: Shard{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	drain(t, s)
	if st := s.Stats(); st != (Stats{Rows: 4, Items: 3, Failures: 1, Bytes: 40}) {
		t.Errorf("stats %+v", st)
	}
	// The content's fingerprint and size: another content, another fingerprint.
	info := s.Info()
	if info.TotalBytes != 40 || !strings.HasPrefix(info.Fingerprint, "sha256:") || !strings.HasSuffix(info.Fingerprint, " size:40") {
		t.Errorf("info %+v", info)
	}
	os.WriteFile(p, []byte("https://x/0\nhttps://x/1\nbad\nhttps://x/2\nhttps://x/3\n"), 0o644)
	s2, err := Open(testContext(t), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Info().Fingerprint == info.Fingerprint {
		t.Errorf("an edited file has the same fingerprint %s", info.Fingerprint)
	}
}

// A folder is read recursively: image files only, absolute paths, lexical order, and the
// same sharding as a list (the shards of a folder partition it).
func TestFolder(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.jpg", "a.JPEG", "notes.txt", "sub/c.png", "sub/deeper/d.webp", "sub/e.gif", "z.bmp", "sub/skip.json"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(testContext(t), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, fails := drainErr(s)
	if err := s.Err(); err != nil || len(fails) != 0 {
		t.Fatalf("err %v, failures %v", err, fails)
	}
	var got []string
	for _, it := range items {
		got = append(got, strings.TrimPrefix(it.URL, dir+"/"))
		if !filepath.IsAbs(it.URL) {
			t.Errorf("%s: not an absolute path", it.URL)
		}
	}
	want := "a.JPEG b.jpg sub/c.png sub/deeper/d.webp sub/e.gif z.bmp"
	if strings.Join(got, " ") != want {
		t.Fatalf("folder rows %q, want %q", strings.Join(got, " "), want)
	}
	if info := s.Info(); info.TotalRows != 6 || !strings.HasPrefix(info.Fingerprint, "files:6 sha256:") {
		t.Errorf("folder info %+v", info)
	}
	// One more image: another fingerprint.
	os.WriteFile(filepath.Join(dir, "sub", "f.png"), []byte("y"), 0o644)
	s2, err := Open(testContext(t), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	drainErr(s2)
	if fp := s2.Info().Fingerprint; !strings.HasPrefix(fp, "files:7 ") || fp == s.Info().Fingerprint {
		t.Errorf("fingerprint after adding a file: %s (was %s)", fp, s.Info().Fingerprint)
	}
	os.Remove(filepath.Join(dir, "sub", "f.png"))
	seen := map[string]int{}
	for i := range 2 {
		sh, err := Open(testContext(t), dir, Options{Shard: Shard{Index: i, Count: 2}})
		if err != nil {
			t.Fatal(err)
		}
		part, _ := drainErr(sh)
		for _, it := range part {
			seen[it.URL]++
		}
	}
	if len(seen) != len(items) {
		t.Fatalf("2 shards cover %d of %d files", len(seen), len(items))
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d shards", u, n)
		}
	}
}

// A local list may mix http(s) URLs with local files: absolute paths, file:// URLs and paths
// relative to the list's folder (with an image extension); each row's URL is then the file's
// absolute path.
func TestListOfLocalPaths(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	os.WriteFile(list, []byte(strings.Join([]string{
		"https://x/1.jpg",
		"/data/a.jpg",
		"file:///data/b%20c.png",
		"file://localhost/data/d.webp",
		"imgs/e.jpg",
		"file://server/share/f.jpg",
		"notes",
	}, "\n")+"\n"), 0o644)
	s, err := Open(testContext(t), list, Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, fails := drainErr(s)
	var got []string
	for _, it := range items {
		got = append(got, it.URL)
	}
	want := []string{"https://x/1.jpg", "/data/a.jpg", "/data/b c.png", "/data/d.webp", filepath.Join(dir, "imgs/e.jpg")}
	if !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
	if len(fails) != 2 || !strings.Contains(fails[0].Reason, `another host "server"`) || !strings.Contains(fails[1].Reason, "not an absolute http(s) URL") {
		t.Errorf("failures %+v", fails)
	}
}

// Columns asked for are carried with each row; one the header lacks is an error from Open,
// and so is a plain list (it has no columns).
func TestSaveColumns(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "l.csv")
	os.WriteFile(csv, []byte("url,caption,KEY\nhttps://x/1,a cat,k1\nhttps://x/2,\"a dog, running\",k2\n"), 0o644)
	s, err := Open(testContext(t), csv, Options{Columns: []string{"caption", "key"}})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drainErr(s)
	if len(items) != 2 || items[1].Columns["caption"] != "a dog, running" || items[0].Columns["key"] != "k1" {
		t.Fatalf("items %+v", items)
	}
	if _, err := Open(testContext(t), csv, Options{Columns: []string{"width"}}); err == nil || !strings.Contains(err.Error(), `no column "width" to save`) {
		t.Errorf("a missing column: %v", err)
	}
	txt := filepath.Join(dir, "l.txt")
	os.WriteFile(txt, []byte("https://x/1\n"), 0o644)
	if _, err := Open(testContext(t), txt, Options{Columns: []string{"caption"}}); err == nil || !strings.Contains(err.Error(), "no columns to save") {
		t.Errorf("a plain list: %v", err)
	}
}

// A quoted pattern of images reads the files it names, sorted, once each.
func TestImagePattern(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.jpg", "a.jpg", "c.png", "notes.txt", "d.jpg"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	s, err := Open(testContext(t), filepath.Join(dir, "{*.jpg,c.png,a.jpg}"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drainErr(s)
	var got []string
	for _, it := range items {
		got = append(got, filepath.Base(it.URL))
	}
	if strings.Join(got, " ") != "a.jpg b.jpg d.jpg c.png" || s.Info().TotalRows != 4 || !strings.HasPrefix(s.Info().Fingerprint, "files:4 ") {
		t.Errorf("rows %v, info %+v", got, s.Info())
	}
	if _, err := Open(testContext(t), filepath.Join(dir, "*.webp"), Options{}); err == nil || !strings.Contains(err.Error(), "matches no image file") {
		t.Errorf("a pattern matching nothing: %v", err)
	}
}
