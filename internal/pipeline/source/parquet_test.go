// parquet_test.go: parquet inputs, written here with parquet-go itself — LAION- and
// img2dataset-shaped lists, nulls and bad URLs as failures, carried columns, sharding, limit,
// the magic bytes deciding over the name, and a 200k-row file streamed in small row groups.

package source

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/parquet-go/parquet-go"
)

type laionRow struct {
	URL        *string `parquet:"URL,optional"`
	TEXT       *string `parquet:"TEXT,optional"`
	WIDTH      *int64  `parquet:"WIDTH,optional"`
	HEIGHT     int32   `parquet:"HEIGHT"`
	SIMILARITY float64 `parquet:"similarity"`
}

type img2datasetRow struct {
	URL     string `parquet:"url"`
	Caption string `parquet:"caption"`
	Key     string `parquet:"key"`
	Status  string `parquet:"status"`
}

// writeParquet writes rows to dir/name, rowsPerGroup rows a row group.
func writeParquet[T any](t *testing.T, dir, name string, rows []T, rowsPerGroup int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, parquet.MaxRowsPerRowGroup(rowsPerGroup), parquet.PageBufferSize(1024))
	for len(rows) > 0 {
		n := min(len(rows), 4096)
		if _, err := w.Write(rows[:n]); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptr[T any](v T) *T { return &v }

// laionRows makes n rows; row 4 (1-based) has a null URL, row 7 a relative one, every third
// WIDTH is null.
func laionRows(n int) []laionRow {
	rows := make([]laionRow, n)
	for i := range rows {
		r := &rows[i]
		r.URL = ptr(fmt.Sprintf("https://laion.example.com/%d.jpg", i+1))
		r.TEXT = ptr(fmt.Sprintf("a caption, number %d", i+1))
		if i%3 != 2 {
			r.WIDTH = ptr(int64(640 + i))
		}
		r.HEIGHT = int32(480 + i)
		r.SIMILARITY = 0.25
	}
	if n >= 7 {
		rows[3].URL = nil
		rows[6].URL = ptr("images/7")
	}
	return rows
}

func openParquetTest(t *testing.T, path string, opt Options) *Source {
	t.Helper()
	s, err := Open(testContext(t), path, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestParquetLAION(t *testing.T) {
	path := writeParquet(t, t.TempDir(), "laion.parquet", laionRows(10), 3)
	s := openParquetTest(t, path, Options{Columns: []string{"text", "WIDTH", "HEIGHT", "Similarity"}})
	info := s.Info()
	fingerprint, size, err := fileFingerprint(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Spec: path, Format: FormatParquet, Columns: []string{"URL", "TEXT", "WIDTH", "HEIGHT", "similarity"},
		URLColumn: "URL", Fingerprint: fingerprint, TotalBytes: size, TotalRows: 10}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("Info = %+v\nwant %+v", info, want)
	}
	items, failures := drain(t, s)
	if len(items) != 8 || len(failures) != 2 {
		t.Fatalf("%d items, %d failures; want 8 and 2", len(items), len(failures))
	}
	wantFailures := []item.Failure{
		{Item: item.Item{Seq: 3, Line: 4}, Stage: "source", Reason: "line 4: empty URL"},
		{Item: item.Item{Seq: 6, Line: 7, URL: "images/7"}, Stage: "source", Reason: "line 7: not an absolute http(s) URL"},
	}
	for i, f := range failures {
		if !reflect.DeepEqual(*f, wantFailures[i]) {
			t.Errorf("failure %d = %+v, want %+v", i, *f, wantFailures[i])
		}
	}
	for _, it := range items {
		row := it.Line
		if it.Seq != row-1 || it.URL != fmt.Sprintf("https://laion.example.com/%d.jpg", row) {
			t.Errorf("item %+v: want Seq %d and the URL of row %d", it, row-1, row)
		}
		width := fmt.Sprint(640 + row - 1)
		if row%3 == 0 {
			width = "" // null
		}
		wantColumns := map[string]string{"text": fmt.Sprintf("a caption, number %d", row), "WIDTH": width,
			"HEIGHT": fmt.Sprint(480 + row - 1), "Similarity": "0.25"}
		if !reflect.DeepEqual(it.Columns, wantColumns) {
			t.Errorf("row %d: Columns = %v, want %v", row, it.Columns, wantColumns)
		}
	}
	if st := s.Stats(); st.Rows != 10 || st.Items != 8 || st.Failures != 2 || st.Bytes <= 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestParquetImg2dataset(t *testing.T) {
	rows := make([]img2datasetRow, 20)
	for i := range rows {
		rows[i] = img2datasetRow{URL: fmt.Sprintf("http://img.example.org/p/%d.png", i), Caption: fmt.Sprintf("caption %d", i),
			Key: fmt.Sprintf("%09d", i), Status: "success"}
	}
	path := writeParquet(t, t.TempDir(), "00000.parquet", rows, 8)

	s := openParquetTest(t, path, Options{Columns: []string{"caption", "key"}})
	if info := s.Info(); info.URLColumn != "url" || info.IDColumn != "" || info.TotalRows != 20 {
		t.Fatalf("Info = %+v", info)
	}
	items, failures := drain(t, s)
	if len(items) != 20 || len(failures) != 0 {
		t.Fatalf("%d items, %d failures; want 20 and 0", len(items), len(failures))
	}
	for i, it := range items {
		if it.Seq != int64(i) || it.Line != int64(i+1) || it.URL != rows[i].URL ||
			it.Columns["caption"] != rows[i].Caption || it.Columns["key"] != rows[i].Key || len(it.Columns) != 2 {
			t.Errorf("item %d = %+v", i, it)
		}
	}

	s = openParquetTest(t, path, Options{Limit: 5})
	items, _ = drain(t, s)
	if len(items) != 5 || items[4].Seq != 4 || items[0].Columns != nil {
		t.Fatalf("Limit 5: %d items, last %+v", len(items), items[len(items)-1])
	}

	// The URL column by name, and the ID column when there is one.
	s = openParquetTest(t, path, Options{URLColumn: "CAPTION"})
	if info := s.Info(); info.URLColumn != "caption" {
		t.Fatalf("URLColumn = %q", info.URLColumn)
	}
	if _, failures := drain(t, s); len(failures) != 20 {
		t.Fatalf("captions as URLs: %d failures, want 20", len(failures))
	}
	type withID struct {
		ID  int64  `parquet:"id"`
		URL string `parquet:"url"`
	}
	path = writeParquet(t, t.TempDir(), "ids.parquet", []withID{{7, "https://a.example/7.jpg"}}, 10)
	items, _ = drain(t, openParquetTest(t, path, Options{}))
	if len(items) != 1 || items[0].ImageID != "7" {
		t.Fatalf("items = %+v, want ImageID 7", items)
	}
}

func TestParquetShards(t *testing.T) {
	path := writeParquet(t, t.TempDir(), "laion.parquet", laionRows(500), 64)
	all, allFailures := drain(t, openParquetTest(t, path, Options{}))
	seen := map[int64]int{} // row -> shard
	for i := range 2 {
		shard := Shard{Index: i, Count: 2}
		items, failures := drain(t, openParquetTest(t, path, Options{Shard: shard}))
		again, _ := drain(t, openParquetTest(t, path, Options{Shard: shard}))
		if !reflect.DeepEqual(items, again) {
			t.Fatalf("shard %v: two reads differ", shard)
		}
		var seq int64
		// Items and failures share one Seq sequence in row order.
		for _, it := range mergeByLine(items, failures) {
			if it.Seq != seq {
				t.Fatalf("shard %v: row %d has Seq %d, want %d", shard, it.Line, it.Seq, seq)
			}
			seq++
			if prev, ok := seen[it.Line]; ok {
				t.Fatalf("row %d is in shards %d and %d", it.Line, prev, i)
			}
			seen[it.Line] = i
		}
		if len(items) == 0 || len(items) == len(all) {
			t.Fatalf("shard %v has %d of %d items", shard, len(items), len(all))
		}
	}
	if len(seen) != len(all)+len(allFailures) {
		t.Fatalf("the shards hold %d rows, the file %d", len(seen), len(all)+len(allFailures))
	}
}

// mergeByLine puts items and failures back in row order.
func mergeByLine(items []item.Item, failures []*item.Failure) []item.Item {
	out := append([]item.Item(nil), items...)
	for _, f := range failures {
		out = append(out, f.Item)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Line < out[j-1].Line; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestParquetErrors(t *testing.T) {
	dir := t.TempDir()
	type noURL struct {
		Link string `parquet:"link"`
		Alt  string `parquet:"alt"`
	}
	path := writeParquet(t, dir, "nourl.parquet", []noURL{{"https://a.example/1.jpg", "x"}}, 10)
	_, err := Open(testContext(t), path, Options{})
	if err == nil || !strings.Contains(err.Error(), `"link", "alt"`) || !strings.Contains(err.Error(), "--url-column") {
		t.Fatalf("no URL column: err = %v", err)
	}
	items, _ := drain(t, openParquetTest(t, path, Options{URLColumn: "LINK"}))
	if len(items) != 1 {
		t.Fatalf("URLColumn link: %d items", len(items))
	}
	if _, err := Open(testContext(t), path, Options{URLColumn: "href"}); err == nil || !strings.Contains(err.Error(), `no column "href"`) {
		t.Fatalf("missing URLColumn: err = %v", err)
	}
	if _, err := Open(testContext(t), path, Options{URLColumn: "link", Columns: []string{"caption"}}); err == nil || !strings.Contains(err.Error(), `"caption"`) {
		t.Fatalf("missing carried column: err = %v", err)
	}
	if _, err := Open(testContext(t), "https://data.example.com/laion/part-0.parquet?sig=1", Options{}); err == nil || !strings.Contains(err.Error(), "download it first") {
		t.Fatalf("http parquet: err = %v", err)
	}
	// A cut file starts like parquet but has no footer.
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.parquet")
	if err := os.WriteFile(cut, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(testContext(t), cut, Options{}); err == nil || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("cut file: err = %v", err)
	}
}

// The magic bytes decide, not the name: a URL list called .parquet is a list.
func TestParquetNameAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.parquet")
	if err := os.WriteFile(path, []byte("https://a.example/1.jpg\nhttps://a.example/2.jpg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openParquetTest(t, path, Options{})
	if s.Info().Format != FormatText {
		t.Fatalf("Format = %q, want text", s.Info().Format)
	}
	if items, _ := drain(t, s); len(items) != 2 {
		t.Fatalf("%d items, want 2", len(items))
	}
}

// A large file in small row groups streams: rows arrive in order while the reading goes on,
// only the columns needed are read, and Close in the middle ends it cleanly.
func TestParquetStream(t *testing.T) {
	n := 200_000
	if raceEnabled || testing.Short() {
		n = 50_000
	}
	rows := make([]img2datasetRow, n)
	for i := range rows {
		rows[i] = img2datasetRow{URL: fmt.Sprintf("https://s.example.com/%d.jpg", i), Key: fmt.Sprint(i),
			Caption: fmt.Sprintf("a caption long enough to outweigh the URL and key columns together, number %d", i)}
	}
	path := writeParquet(t, t.TempDir(), "big.parquet", rows, 1000)
	rows = nil

	s := openParquetTest(t, path, Options{Buffer: 16, Columns: []string{"key"}})
	var count int64
	for r := range s.Records() {
		if r.Failure != nil || r.Item.Seq != count || r.Item.Columns["key"] != fmt.Sprint(count) {
			t.Fatalf("record %d = %+v", count, r)
		}
		count++
	}
	if err := s.Err(); err != nil || count != int64(n) {
		t.Fatalf("%d rows, err %v; want %d", count, err, n)
	}
	// Only the URL and key columns are read: the captions, most of the file, stay on disk.
	if st := s.Stats(); st.Bytes <= 0 || st.Bytes > s.Info().TotalBytes/2 {
		t.Errorf("read %d of the file's %d bytes; want under half", st.Bytes, s.Info().TotalBytes)
	}

	s = openParquetTest(t, path, Options{Buffer: 1})
	<-s.Records()
	s.Close()
	if err := s.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
}
