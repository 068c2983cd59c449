// tar_test.go: tar shard inputs written here with archive/tar in img2dataset's layout, from
// the decode stage's small test images: samples, failures, Seqs, sharding, limit, the spec
// forms Open accepts, broken shards.

package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/budget"
)

type member struct {
	name string
	body []byte
}

func testImage(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "decode", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarBytes makes a tar of members, in order.
func tarBytes(t *testing.T, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// img2datasetSample is the members img2dataset writes for one key: KEY.jpg (when the download
// succeeded), KEY.json and KEY.txt.
func img2datasetSample(key string, img []byte, url, caption string) []member {
	status, extra := "success", ""
	if img == nil {
		status, extra = "failed_to_download", `, "error_message": "http 404"`
	}
	js := fmt.Sprintf(`{"url": %q, "caption": %q, "key": %q, "status": %q%s, "width": 64, "height": 48}`, url, caption, filepath.Base(key), status, extra)
	var ms []member
	if img != nil {
		ms = append(ms, member{key + ".jpg", img})
	}
	return append(ms, member{key + ".txt", []byte(caption)}, member{key + ".json", []byte(js)})
}

// shardOf makes a shard of n img2dataset samples keyed SSSSSIIII; every fifth has failed.
func shardOf(t *testing.T, shard, n int, img []byte) []byte {
	var ms []member
	for i := range n {
		key := fmt.Sprintf("%05d%04d", shard, i)
		body := img
		if i%5 == 4 {
			body = nil
		}
		ms = append(ms, img2datasetSample(key, body, "https://example.com/"+key+".jpg", "caption "+key)...)
	}
	return tarBytes(t, ms)
}

func openTarSpec(t *testing.T, spec string, opt Options) *Source {
	t.Helper()
	s, err := Open(testContext(t), spec, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", spec, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// drainRecords reads every Record and checks that Err is nil.
func drainRecords(t *testing.T, s *Source) []Record {
	t.Helper()
	var recs []Record
	for r := range s.Records() {
		recs = append(recs, r)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	return recs
}

func recSeq(r Record) int64 {
	if r.Failure != nil {
		return r.Failure.Seq
	}
	return r.Item.Seq
}

func recItem(r Record) (it struct {
	URL  string
	Line int64
}) {
	if r.Failure != nil {
		it.URL, it.Line = r.Failure.URL, r.Failure.Line
	} else {
		it.URL, it.Line = r.Item.URL, r.Item.Line
	}
	return it
}

func TestTarImg2datasetShard(t *testing.T) {
	jpg, png := testImage(t, "s420.jpg"), testImage(t, "rgb.png")
	var ms []member
	ms = append(ms, img2datasetSample("000000000", jpg, "https://example.com/a.jpg", "a cat")...)
	ms = append(ms, img2datasetSample("000000001", nil, "https://example.com/b.jpg", "a dog")...)
	ms = append(ms, member{"000000002.png", png}, member{"000000002.txt", []byte("from the txt\n")}) // no json
	// json before the image, in a subfolder, with a null caption: the txt gives it.
	ms = append(ms, member{"sub/000000003.json", []byte(`{"url": "https://example.com/d.jpg", "caption": null, "status": "success"}`)},
		member{"sub/000000003.jpg", jpg}, member{"sub/000000003.txt", []byte("d caption")})
	ms = append(ms, member{"000000004.json", []byte(`{"url": "https://example.com/e.jpg", "status": "failed_to_download"}`)})
	ms = append(ms, member{"000000005.npy", []byte("ignored")}) // no image, json or txt: not a sample
	dir := t.TempDir()
	p := filepath.Join(dir, "00000.tar")
	writeFile(t, p, tarBytes(t, ms))

	s := openTarSpec(t, p, Options{Columns: []string{"caption", "Key"}})
	recs := drainRecords(t, s)
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5: %+v", len(recs), recs)
	}
	for i, r := range recs {
		if recSeq(r) != int64(i) || recItem(r).Line != int64(i+1) {
			t.Errorf("record %d: Seq %d Line %d", i, recSeq(r), recItem(r).Line)
		}
	}
	want := []struct {
		url, caption, key, failure string
		body                       []byte
	}{
		{"https://example.com/a.jpg", "a cat", "000000000", "", jpg},
		{"https://example.com/b.jpg", "", "", "no image in the shard: http 404", nil},
		{"00000.tar/000000002", "from the txt", "000000002", "", png},
		{"https://example.com/d.jpg", "d caption", "sub/000000003", "", jpg},
		{"https://example.com/e.jpg", "", "", "no image in the shard", nil},
	}
	for i, w := range want {
		r := recs[i]
		if w.failure != "" {
			if r.Failure == nil || r.Failure.Reason != w.failure || r.Failure.Stage != "source" || r.Failure.URL != w.url || r.Body != nil {
				t.Errorf("record %d: %+v %+v, want failure %q for %s", i, r.Item, r.Failure, w.failure, w.url)
			}
			continue
		}
		if r.Failure != nil {
			t.Errorf("record %d: failure %v", i, r.Failure)
			continue
		}
		if r.Item.URL != w.url || !bytes.Equal(r.Body, w.body) || r.Item.Local() {
			t.Errorf("record %d: URL %q, %d bytes; want %q, %d bytes", i, r.Item.URL, len(r.Body), w.url, len(w.body))
		}
		if got := r.Item.Columns; len(got) != 2 || got["caption"] != w.caption || got["Key"] != w.key {
			t.Errorf("record %d: columns %v, want caption %q, Key %q", i, got, w.caption, w.key)
		}
	}
	info := s.Info()
	st, _ := os.Stat(p)
	if info.Format != FormatTar || info.TotalBytes != st.Size() || !strings.HasPrefix(info.Fingerprint, "shards:1 sha256:") {
		t.Errorf("info %+v", info)
	}
	if stats := s.Stats(); stats.Rows != 5 || stats.Items != 3 || stats.Failures != 2 || stats.Bytes != st.Size() {
		t.Errorf("stats %+v (file %d bytes)", stats, st.Size())
	}

	// No columns asked: none carried. A column a tar has not: an error from Open.
	if recs := drainRecords(t, openTarSpec(t, p, Options{})); recs[0].Item.Columns != nil {
		t.Errorf("columns %v without asking", recs[0].Item.Columns)
	}
	if _, err := Open(testContext(t), p, Options{Columns: []string{"width"}}); err == nil || !strings.Contains(err.Error(), "caption and key") {
		t.Errorf("unknown column: %v", err)
	}
	if _, err := Open(testContext(t), p, Options{Format: FormatCSV}); err == nil {
		t.Error("a format for a tar: no error")
	}
	// The fingerprint follows the shard's size and time.
	os.Chtimes(p, st.ModTime(), st.ModTime().Add(1e9))
	if fp := openTarSpec(t, p, Options{}).Info().Fingerprint; fp == info.Fingerprint {
		t.Error("the fingerprint ignores the modification time")
	}
}

// threeShards writes shards 00000..00002 of 10 samples each under dir and returns the keys'
// URLs in input order (failed ones included).
func threeShards(t *testing.T, dir string) []string {
	jpg := testImage(t, "tiny_7x3.jpg")
	var urls []string
	for sh := range 3 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("%05d.tar", sh)), shardOf(t, sh, 10, jpg))
		for i := range 10 {
			urls = append(urls, fmt.Sprintf("https://example.com/%05d%04d.jpg", sh, i))
		}
	}
	return urls
}

func recURLs(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, recItem(r).URL)
	}
	return out
}

func TestTarShardsSeqShardingLimit(t *testing.T) {
	dir := t.TempDir()
	want := threeShards(t, dir)
	spec := filepath.Join(dir, "{00000..00002}.tar")
	all := drainRecords(t, openTarSpec(t, spec, Options{}))
	if got := recURLs(all); !slices.Equal(got, want) {
		t.Fatalf("URLs %v\nwant %v", got, want)
	}
	for i, r := range all {
		if recSeq(r) != int64(i) || recItem(r).Line != int64(i+1) || (r.Failure != nil) != (i%5 == 4) {
			t.Errorf("record %d: Seq %d Line %d failure %v", i, recSeq(r), recItem(r).Line, r.Failure)
		}
	}

	// Two shards partition the samples; each numbers its own Seqs from 0, keeps the Lines,
	// and gives the same Records when read again.
	lineOf := map[string]int64{}
	for _, r := range all {
		lineOf[recItem(r).URL] = recItem(r).Line
	}
	seen := map[string]int{}
	for i := range 2 {
		opt := Options{Shard: Shard{Index: i, Count: 2}}
		part := drainRecords(t, openTarSpec(t, spec, opt))
		if again := drainRecords(t, openTarSpec(t, spec, opt)); !slices.Equal(recURLs(again), recURLs(part)) {
			t.Errorf("shard %d differs when read again", i)
		}
		if len(part) == 0 || len(part) == len(all) {
			t.Errorf("shard %d has %d of %d samples", i, len(part), len(all))
		}
		for j, r := range part {
			it := recItem(r)
			seen[it.URL]++
			if recSeq(r) != int64(j) || it.Line != lineOf[it.URL] || !opt.Shard.Contains(it.URL) {
				t.Errorf("shard %d record %d: Seq %d Line %d (want %d)", i, j, recSeq(r), it.Line, lineOf[it.URL])
			}
		}
	}
	if len(seen) != len(all) {
		t.Errorf("the shards hold %d distinct samples, want %d", len(seen), len(all))
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d shards", u, n)
		}
	}

	// Limit 6 items: the sixth item is the seventh sample (the fifth failed on the way).
	s := openTarSpec(t, spec, Options{Limit: 6})
	lim := drainRecords(t, s)
	if !slices.Equal(recURLs(lim), want[:7]) {
		t.Errorf("limit 6: %v", recURLs(lim))
	}
	if st := s.Stats(); st.Items != 6 || st.Failures != 1 {
		t.Errorf("limit 6: stats %+v", st)
	}
}

func TestTarSpecForms(t *testing.T) {
	dir := t.TempDir()
	want := threeShards(t, dir)
	writeFile(t, filepath.Join(dir, "00000.parquet"), []byte("PAR1 not really"))
	writeFile(t, filepath.Join(dir, "00000_stats.json"), []byte("{}"))
	var total int64
	for i := range 3 {
		st, _ := os.Stat(filepath.Join(dir, fmt.Sprintf("%05d.tar", i)))
		total += st.Size()
	}
	for _, c := range []struct {
		spec string
		want []string
	}{
		{filepath.Join(dir, "*.tar"), want},
		{filepath.Join(dir, "0000[12].tar"), want[10:]},
		{filepath.Join(dir, "*"), want}, // only the tar shards of what matches
		{filepath.Join(dir, "{00002,00000}.tar"), append(slices.Clone(want[20:]), want[:10]...)},
		{filepath.Join(dir, "0000{0..1}.tar"), want[:20]},
		{filepath.Join(dir, "{00001..00001}.tar"), want[10:20]},
		{dir, want}, // a folder of shards (and their parquet and stats files)
		{filepath.Join(dir, "00001.tar"), want[10:20]},
	} {
		s := openTarSpec(t, c.spec, Options{})
		if got := recURLs(drainRecords(t, s)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v\nwant %v", c.spec, got, c.want)
		}
		if s.Info().Format != FormatTar {
			t.Errorf("%s: format %s", c.spec, s.Info().Format)
		}
		if (c.spec == dir || strings.HasSuffix(c.spec, "*.tar")) && s.Info().TotalBytes != total {
			t.Errorf("%s: TotalBytes %d, want %d", c.spec, s.Info().TotalBytes, total)
		}
		if st := s.Stats(); st.Bytes != s.Info().TotalBytes {
			t.Errorf("%s: read %d bytes of %d", c.spec, st.Bytes, s.Info().TotalBytes)
		}
	}
	for _, c := range []struct{ spec, err string }{
		{filepath.Join(dir, "{00000..00004}.tar"), "2 of the 5 shards named do not exist"},
		{filepath.Join(dir, "*.tgz"), "matches no tar shard"},
		{filepath.Join(dir, "{00000.tar,00000.parquet}"), "is not a tar shard"},
		{filepath.Join(dir, "{0..99999999}.tar"), "over the"},
	} {
		if _, err := Open(testContext(t), c.spec, Options{}); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one saying %q", c.spec, err, c.err)
		}
	}

	// A folder with an image in it stays a folder of images.
	writeFile(t, filepath.Join(dir, "z", "cover.jpg"), testImage(t, "tiny_1x1.jpg"))
	s := openTarSpec(t, dir, Options{})
	items, _ := drain(t, s)
	if s.Info().Format == FormatTar || len(items) != 1 || !strings.HasSuffix(items[0].URL, "cover.jpg") {
		t.Errorf("a folder with an image: format %s, items %v", s.Info().Format, urls(items))
	}
}

func TestTarGzip(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(shardOf(t, 7, 3, testImage(t, "tiny_1x1.jpg")))
	gz.Close()
	writeFile(t, filepath.Join(dir, "00007.tar.gz"), buf.Bytes())
	recs := drainRecords(t, openTarSpec(t, filepath.Join(dir, "00007.tar.gz"), Options{}))
	if len(recs) != 3 || recs[0].Failure != nil || len(recs[0].Body) == 0 {
		t.Errorf("gzipped shard: %+v", recs)
	}
}

func TestTarBrokenShards(t *testing.T) {
	dir := t.TempDir()
	jpg := testImage(t, "s420.jpg")
	whole := shardOf(t, 0, 4, jpg)
	// Cut the shard in the middle of the third sample's image (each sample's members are one
	// 512-byte header, the jpg padded to 512, then txt and json in a block each).
	perSample := 512 + (len(jpg)+511)/512*512 + 2*1024
	writeFile(t, filepath.Join(dir, "00000.tar"), whole[:2*perSample+512+1000])
	writeFile(t, filepath.Join(dir, "00001.tar"), shardOf(t, 1, 2, jpg))
	writeFile(t, filepath.Join(dir, "00002.tar"), bytes.Repeat([]byte("not a tar "), 200))
	writeFile(t, filepath.Join(dir, "00003.tar"), shardOf(t, 3, 1, jpg))

	recs := drainRecords(t, openTarSpec(t, filepath.Join(dir, "*.tar"), Options{}))
	got := recURLs(recs)
	want := []string{
		"https://example.com/000000000.jpg", "https://example.com/000000001.jpg", "00000.tar",
		"https://example.com/000010000.jpg", "https://example.com/000010001.jpg", "00002.tar",
		"https://example.com/000030000.jpg",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("URLs %v\nwant %v", got, want)
	}
	for i, r := range recs {
		if recSeq(r) != int64(i) || recItem(r).Line != int64(i+1) {
			t.Errorf("record %d: Seq %d Line %d", i, recSeq(r), recItem(r).Line)
		}
	}
	if f := recs[2].Failure; f == nil || !strings.HasPrefix(f.Reason, "truncated shard: 00000.tar ends after 2 samples") {
		t.Errorf("truncated shard: %+v", recs[2])
	}
	if f := recs[5].Failure; f == nil || !strings.HasPrefix(f.Reason, "corrupt shard: 00002.tar ends after 0 samples") {
		t.Errorf("corrupt shard: %+v", recs[5])
	}
}

func TestTarMemberTooLarge(t *testing.T) {
	defer func(old int64) { maxTarMember = old }(maxTarMember)
	maxTarMember = 20 << 10
	dir := t.TempDir()
	var ms []member
	ms = append(ms, img2datasetSample("000000000", testImage(t, "s420.jpg"), "https://example.com/big.jpg", "big")...)
	ms = append(ms, img2datasetSample("000000001", testImage(t, "rgb.png"), "https://example.com/small.jpg", "small")...)
	writeFile(t, filepath.Join(dir, "00000.tar"), tarBytes(t, ms))
	recs := drainRecords(t, openTarSpec(t, filepath.Join(dir, "00000.tar"), Options{}))
	if len(recs) != 2 || recs[0].Failure == nil || !strings.HasPrefix(recs[0].Failure.Reason, "too large: 000000000.jpg is 34222 bytes") ||
		recs[0].Failure.URL != "https://example.com/big.jpg" || recs[1].Failure != nil || len(recs[1].Body) != 11633 {
		t.Errorf("records %+v", recs)
	}
}

func TestTarCloseEarly(t *testing.T) {
	dir := t.TempDir()
	threeShards(t, dir)
	s := openTarSpec(t, dir, Options{Buffer: 1})
	<-s.Records()
	s.Close()
	for range s.Records() {
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err after Close: %v", err)
	}
}

// With Options.Budget, an image member takes its size before it is read: the members read and
// not yet released stay within it (the reader waits), each Record holds its member's bytes
// until Release, a member larger than the whole budget fails its sample "too large for
// --memory", and the rows of other shards give their bytes back at once.
func TestTarMembersWithinBudget(t *testing.T) {
	dir := t.TempDir()
	small, big := testImage(t, "rgb.png"), testImage(t, "s420.jpg") // 11633 and 34222 bytes
	var ms []member
	for i := range 12 {
		ms = append(ms, img2datasetSample(fmt.Sprintf("0000%05d", i), small, fmt.Sprintf("https://example.com/%d.jpg", i), "c")...)
	}
	ms = append(ms, img2datasetSample("000000099", big, "https://example.com/big.jpg", "big")...)
	writeFile(t, filepath.Join(dir, "00000.tar"), tarBytes(t, ms))
	for _, shard := range []Shard{{}, {Index: 0, Count: 2}} {
		b := budget.New("bodies", 2*11633+5000) // two small members at once; never the big one
		s := openTarSpec(t, filepath.Join(dir, "00000.tar"), Options{Budget: b, Shard: shard})
		var items, failures int
		for r := range s.Records() {
			if b.Held() > b.Limit() {
				t.Errorf("held %d over the budget %d", b.Held(), b.Limit())
			}
			switch {
			case r.Failure != nil:
				failures++
				if r.Failure.URL != "https://example.com/big.jpg" || !strings.HasPrefix(r.Failure.Reason, "too large for --memory: 000000099.jpg") {
					t.Errorf("failure %+v", r.Failure)
				}
			case r.Held() != int64(len(r.Body)) || len(r.Body) != len(small):
				t.Errorf("record %s holds %d for a body of %d", r.Item.URL, r.Held(), len(r.Body))
			default:
				items++
			}
			time.Sleep(2 * time.Millisecond) // a slow consumer: the reader fills the budget and waits
			r.Release()
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		others := int(s.Stats().OtherShards)
		if items+failures+others != 13 || (shard.Count == 0 && (failures != 1 || others != 0)) || (shard.Count == 2 && (others == 0 || items == 0)) {
			t.Errorf("shard %v: %d items, %d failures, %d rows of the other shard", shard, items, failures, others)
		}
		if b.Held() != 0 || b.Peak() > b.Limit() || b.Peak() < 2*11633 {
			t.Errorf("shard %v: held %d, peak %d of %d", shard, b.Held(), b.Peak(), b.Limit())
		}
	}
}
