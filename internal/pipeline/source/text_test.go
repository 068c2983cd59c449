// text_test.go: Options.TextColumn, the text each row carries to be embedded (Item.Text), from
// every input that has columns, and the inputs that have none.
package source

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CSV and TSV: the column by header name (any case); an empty field, or a row too short to
// have it, is ""; a header without it, a plain list and a folder are errors from Open.
func TestTextColumnCSV(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "l.csv")
	os.WriteFile(csv, []byte("url,Caption,key\nhttps://x/1,a cat,k1\nhttps://x/2,\"a dog, running\",k2\nhttps://x/3,,k3\nhttps://x/4\n"), 0o644)
	s, err := Open(testContext(t), csv, Options{TextColumn: "caption", Columns: []string{"key"}})
	if err != nil {
		t.Fatal(err)
	}
	items, fails := drain(t, s)
	want := []string{"a cat", "a dog, running", "", ""}
	if len(items) != len(want) || len(fails) != 0 {
		t.Fatalf("%d items %+v, %d failures %+v", len(items), items, len(fails), fails)
	}
	for i, it := range items {
		if it.Text != want[i] {
			t.Errorf("row %d: Text %q, want %q", i, it.Text, want[i])
		}
	}
	if items[0].Columns["key"] != "k1" || len(items[0].Columns) != 1 {
		t.Errorf("saved columns %v: the text column is not a saved column", items[0].Columns)
	}

	tsv := filepath.Join(dir, "l.tsv")
	os.WriteFile(tsv, []byte("url\ttitle\nhttps://x/1\tt\xffone\n"), 0o644)
	s, err = Open(testContext(t), tsv, Options{TextColumn: "TITLE"})
	if err != nil {
		t.Fatal(err)
	}
	if items, _ := drain(t, s); len(items) != 1 || items[0].Text != "t\uFFFDone" {
		t.Errorf("TSV items %+v", items)
	}

	if _, err := Open(testContext(t), csv, Options{TextColumn: "text"}); err == nil || !strings.Contains(err.Error(), `no text column "text" in the header; the columns are "url", "Caption", "key"`) {
		t.Errorf("a missing column: %v", err)
	}
	txt := filepath.Join(dir, "l.txt")
	os.WriteFile(txt, []byte("https://x/1\n"), 0o644)
	if _, err := Open(testContext(t), txt, Options{TextColumn: "caption"}); err == nil || !strings.Contains(err.Error(), `no text column "caption"`) {
		t.Errorf("a plain list: %v", err)
	}
	imgs := filepath.Join(dir, "imgs")
	os.MkdirAll(imgs, 0o755)
	os.WriteFile(filepath.Join(imgs, "a.jpg"), []byte("x"), 0o644)
	if _, err := Open(testContext(t), imgs, Options{TextColumn: "caption"}); err == nil || !strings.Contains(err.Error(), `no text column "caption"`) {
		t.Errorf("a folder of images: %v", err)
	}
	// Without TextColumn no row carries a text.
	s, _ = Open(testContext(t), csv, Options{})
	if items, _ := drain(t, s); items[0].Text != "" {
		t.Errorf("Text %q without asking", items[0].Text)
	}
}

// Parquet: the column by name; a null is "".
func TestTextColumnParquet(t *testing.T) {
	rows := laionRows(10)
	rows[1].TEXT = nil
	path := writeParquet(t, t.TempDir(), "laion.parquet", rows, 3)
	s := openParquetTest(t, path, Options{TextColumn: "text"})
	items, fails := drain(t, s)
	if len(items) != 8 || len(fails) != 2 { // rows 4 and 7 have no usable URL
		t.Fatalf("%d items, %d failures", len(items), len(fails))
	}
	for _, it := range items {
		want := fmt.Sprintf("a caption, number %d", it.Line)
		if it.Line == 2 {
			want = ""
		}
		if it.Text != want {
			t.Errorf("line %d: Text %q, want %q", it.Line, it.Text, want)
		}
	}
	if _, err := Open(testContext(t), path, Options{TextColumn: "caption"}); err == nil || !strings.Contains(err.Error(), `no text column "caption"`) {
		t.Errorf("a missing column: %v", err)
	}
}

// Tar shards: "caption" is the json's caption, else the .txt (as --save-columns caption);
// another name is that field of the json; a sample without it is "".
func TestTextColumnTar(t *testing.T) {
	jpg := testImage(t, "s420.jpg")
	var ms []member
	ms = append(ms, member{"0.json", []byte(`{"url": "https://e.com/0.jpg", "caption": "json caption", "title": "a title", "n": 7}`)},
		member{"0.jpg", jpg}, member{"0.txt", []byte("txt caption\n")})
	ms = append(ms, member{"1.jpg", jpg}, member{"1.txt", []byte("only a txt\r\n")})
	ms = append(ms, member{"2.json", []byte(`{"url": "https://e.com/2.jpg", "caption": null, "title": null}`)}, member{"2.jpg", jpg})
	ms = append(ms, member{"3.jpg", jpg})
	p := filepath.Join(t.TempDir(), "00000.tar")
	writeFile(t, p, tarBytes(t, ms))

	for _, c := range []struct {
		column string
		want   []string
	}{
		{"caption", []string{"json caption", "only a txt", "", ""}},
		{"Caption", []string{"json caption", "only a txt", "", ""}},
		{"title", []string{"a title", "", "", ""}},
		{"n", []string{"7", "", "", ""}},
		{"missing", []string{"", "", "", ""}},
	} {
		recs := drainRecords(t, openTarSpec(t, p, Options{TextColumn: c.column}))
		if len(recs) != len(c.want) {
			t.Fatalf("%s: %d records", c.column, len(recs))
		}
		for i, r := range recs {
			if r.Failure != nil || r.Item.Text != c.want[i] || r.Item.Columns != nil {
				t.Errorf("%s: sample %d: %+v %v, want Text %q", c.column, i, r.Item, r.Failure, c.want[i])
			}
		}
	}
}
