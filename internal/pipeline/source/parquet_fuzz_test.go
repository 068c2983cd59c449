// parquet_fuzz_test.go: a fuzz target for the parquet reader: arbitrary bytes starting with
// the magic "PAR1" as a local file, checked as every list is (reader_fuzz_test.go). A corrupt
// file must end as an error from Open or Err, never as a panic or a hang.

package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// parquetSeed writes rows as a parquet file in memory, rowsPerGroup rows a row group.
func parquetSeed[T any](tb testing.TB, rows []T, rowsPerGroup int64, opts ...parquet.WriterOption) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, append(opts, parquet.MaxRowsPerRowGroup(rowsPerGroup), parquet.PageBufferSize(256))...)
	if _, err := w.Write(rows); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzParquet(f *testing.F) {
	i2d := []img2datasetRow{
		{URL: "https://a.example/1.jpg", Caption: "one", Key: "000000000", Status: "success"},
		{URL: "images/2.jpg", Caption: "two", Key: "000000001", Status: "success"},
		{URL: "", Caption: "three", Key: "000000002", Status: "failed_to_download"},
	}
	type oiRow struct {
		ImageID      string `parquet:"ImageID"`
		OriginalURL  string `parquet:"OriginalURL"`
		OriginalMD5  string `parquet:"OriginalMD5"`
		OriginalSize int64  `parquet:"OriginalSize"`
	}
	f.Add(parquetSeed(f, laionRows(9), 4))
	f.Add(parquetSeed(f, laionRows(5), 8, parquet.Compression(&parquet.Zstd)))
	f.Add(parquetSeed(f, i2d, 2))
	f.Add(parquetSeed(f, []oiRow{{"0123456789abcdef", "https://farm.example/o.jpg", "KFukvivpCM5QXl5SqKe41g==", 4405052}}, 1, parquet.Compression(&parquet.Snappy)))

	dir := f.TempDir()
	path := filepath.Join(dir, "list.parquet")
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte(parquetMagic)) {
			return // not parquet: read as a list, which FuzzListReader covers
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzTimeout)
		defer cancel()
		for _, opt := range []Options{{Buffer: 16}, {Buffer: 16, Columns: []string{"caption"}, URLColumn: "url"}} {
			s, err := Open(ctx, path, opt)
			if err != nil {
				continue
			}
			checkRecords(t, s, DefaultMaxURLBytes)
			s.Close()
		}
	})
}

// TestParquetFooterLengthBounded: a file whose last bytes declare a 4 GiB footer (FuzzParquet
// found it) is refused without allocating what it declares.
func TestParquetFooterLengthBounded(t *testing.T) {
	data := append(parquetSeed(t, laionRows(3), 4), "(\x03\xff\xffPAR1"...)
	path := filepath.Join(t.TempDir(), "big-footer.parquet")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Open(testContext(t), path, Options{})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "footer") {
		t.Fatalf("Open: %v; want an error about the footer", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Fatalf("Open allocated %d MiB for a %d-byte file", n>>20, len(data))
	}
}
