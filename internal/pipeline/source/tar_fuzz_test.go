// tar_fuzz_test.go: a fuzz target for the tar shard reader: arbitrary bytes as a shard on
// disk (plain or gzipped), checked as every list is (reader_fuzz_test.go), plus what a tar
// input promises: each item carries its image bytes, within the member limit.

package source

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// tarSeed makes a tar of members, in order, for the seed corpus.
func tarSeed(tb testing.TB, members []member) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzTarShard(f *testing.F) {
	img, err := os.ReadFile(filepath.Join("..", "decode", "testdata", "tiny_7x3.jpg"))
	if err != nil {
		f.Fatal(err)
	}
	png, err := os.ReadFile(filepath.Join("..", "decode", "testdata", "gray.png"))
	if err != nil {
		f.Fatal(err)
	}
	// img2dataset's layout: KEY.jpg, KEY.json, KEY.txt per sample; a failed download has only
	// the json; a sample without json falls back to shard/key.
	shard := tarSeed(f, []member{
		{"000000000.jpg", img}, {"000000000.json", []byte(`{"url":"https://a.example/1.jpg","caption":"a cat","key":"000000000","status":"success"}`)}, {"000000000.txt", []byte("a cat\n")},
		{"000000001.json", []byte(`{"url":"https://a.example/2.jpg","caption":null,"status":"failed_to_download","error_message":"http 404"}`)},
		{"./000000002.png", png}, {"000000002.txt", []byte("no json")},
		{"000000003.webp", img}, {"000000003.json", []byte(`{"url":12,"caption":["x"]}`)},
	})
	f.Add(shard)
	f.Add(gzipBytes(f, shard))
	f.Add(shard[:len(shard)*2/3])
	f.Add(tarSeed(f, []member{{"a/b.c.jpg", img}, {"a/b.c.jpg", png}, {"k.json", []byte("{")}}))
	// A member name that is not UTF-8: the sample's fallback URL must still be (it is stored
	// as a string in the output).
	f.Add(tarSeed(f, []member{{"a\xffb.jpg", img}}))

	dir := f.TempDir()
	path := filepath.Join(dir, "000000.tar")
	maxTarMember, maxTarMetaMember = 1<<20, 64<<10 // declared sizes are allocated: keep an input cheap
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzTimeout)
		defer cancel()
		s, err := Open(ctx, path, Options{Columns: []string{"caption", "key"}, TextColumn: "title", Buffer: 4})
		if err != nil {
			t.Fatalf("Open: %v", err) // a broken shard is a failure Record, never an error
		}
		defer s.Close()
		items, _ := checkRecords(t, s, DefaultMaxURLBytes)
		if err := s.Err(); err != nil {
			t.Fatalf("Err: %v", err)
		}
		for _, rec := range items {
			if len(rec.Body) == 0 || int64(len(rec.Body)) > maxTarMember {
				t.Fatalf("item %q: body of %d bytes", rec.Item.URL, len(rec.Body))
			}
		}
	})
}
