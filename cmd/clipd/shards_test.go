// shards_test.go: img2dataset's outputs as inputs: tar shards in the webdataset layout (json
// with url and caption, failed downloads without an image) and a parquet URL list written
// with the Go parquet library (Debian 12 has no pyarrow), end to end through clipd embed.
package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/clipd/clipd/embed"
)

// writeShard writes dir/name the way img2dataset does: per sample KEY.jpg (or .png), KEY.json
// {url, caption, key, status} and KEY.txt; a sample whose download failed has only its json.
func writeShard(t *testing.T, path string, first int, images []string, failedEvery int) (urls, failed []string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	for i, img := range images {
		key := fmt.Sprintf("%09d", first+i)
		url := "https://images.example/" + img + "?k=" + key
		meta := map[string]any{"url": url, "caption": "caption of " + key, "key": key, "status": "success"}
		if failedEvery > 0 && i%failedEvery == failedEvery-1 {
			meta["status"], meta["error_message"] = "failed_to_download", "HTTP Error 404: Not Found"
			b, _ := json.Marshal(meta)
			put(key+".json", b)
			failed = append(failed, url)
			continue
		}
		put(key+filepath.Ext(img), readFile(t, filepath.Join(e2eDir, img)))
		b, _ := json.Marshal(meta)
		put(key+".json", b)
		put(key+".txt", []byte("caption of "+key+"\n"))
		urls = append(urls, url)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return urls, failed
}

// Three shards by brace pattern (and by a list of them): every sample accounted once (failed downloads with
// img2dataset's reason), json URLs and captions kept, embeddings equal to the engine's for
// the same bytes.
func TestTarShardsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	files := goodFiles(t)
	var urls, failed []string
	for s := range 3 {
		u, f := writeShard(t, filepath.Join(dir, fmt.Sprintf("%05d.tar", s)), s*20, files[:20], 7)
		urls, failed = append(urls, u...), append(failed, f...)
	}
	out := t.TempDir()
	o := testEmbedOptions(filepath.Join(dir, "{00000..00002}.tar"), out)
	o.SaveColumns = []string{"caption", "key"}
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	r := readLocal(t, filepath.Join(out, embed.FinalName))
	if strings.Join(r.URLs, "\n") != strings.Join(urls, "\n") {
		t.Fatalf("rows %d, want the %d samples with images in shard order", len(r.URLs), len(urls))
	}
	if strings.Join(r.Failed, "\n") != strings.Join(failed, "\n") || !strings.Contains(r.Reasons[0], "no image in the shard: HTTP Error 404") {
		t.Fatalf("failures %v %v, want %v", r.Failed, r.Reasons, failed)
	}
	// The same shards named by a list (paths relative to it) give the same rows.
	list := filepath.Join(dir, "shards.txt")
	os.WriteFile(list, []byte("# img2dataset output\n00000.tar\n00001.tar\n"+filepath.Join(dir, "00002.tar")+"\n"), 0o644)
	byList := t.TempDir()
	if err := runEmbed(testCtx(t), testEmbedOptions(list, byList)); err != nil {
		t.Fatal(err)
	}
	if l := readLocal(t, filepath.Join(byList, embed.FinalName)); strings.Join(l.URLs, "\n") != strings.Join(urls, "\n") || len(l.Failed) != len(failed) {
		t.Errorf("a list of the shards: %d rows, %d failures", len(l.URLs), len(l.Failed))
	}
	want := expectedEmbeddings(t, files)
	for i, u := range r.URLs {
		name := strings.TrimPrefix(u[:strings.Index(u, "?")], "https://images.example/")
		if !closeEnough(r.Embeddings[i], want[name]) {
			t.Fatalf("%s: the embedding differs from the engine's for the same bytes", u)
		}
		if key := u[strings.Index(u, "=")+1:]; r.Captions[i] != "caption of "+key {
			t.Fatalf("%s: caption %q", u, r.Captions[i])
		}
	}
}

type listRow struct {
	URL     string `parquet:"url"`
	Caption string `parquet:"caption"`
	Width   int64  `parquet:"width"`
}

// A parquet URL list (img2dataset's input), several row groups, one row a local file: rows in
// order, the caption column saved.
func TestParquetListEndToEnd(t *testing.T) {
	srv := newImageServer(t)
	local, _ := filepath.Abs(filepath.Join(e2eDir, "img_00.jpg")) // a local file's row, read, not fetched
	urls := append(manyURLs(srv.URL, goodFiles(t), 30), local, srv.URL+"/missing")
	p := filepath.Join(t.TempDir(), "list.parquet")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[listRow](f, parquet.MaxRowsPerRowGroup(8))
	for i, u := range urls {
		if _, err := w.Write([]listRow{{URL: u, Caption: fmt.Sprintf("row %d", i), Width: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := t.TempDir()
	o := testEmbedOptions(p, out)
	o.SaveColumns = []string{"caption"}
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	r := readLocal(t, filepath.Join(out, embed.FinalName))
	if strings.Join(r.URLs, "\n") != strings.Join(urls[:31], "\n") || len(r.Failed) != 1 || r.Failed[0] != srv.URL+"/missing" {
		t.Fatalf("rows %d, failures %v", len(r.URLs), r.Failed)
	}
	for i := range r.URLs {
		if r.Captions[i] != fmt.Sprintf("row %d", i) {
			t.Fatalf("row %d: caption %q", i, r.Captions[i])
		}
	}
}
