// layout_test.go: pins what a chunk file and a final file hold, read back by h5py: dataset
// names, dtypes, shapes, HDF5 chunk shapes, filters, and the attributes with their types
// and values. The expectations were taken from the files the code wrote before package
// outfile existed; a change to the format has to change them on purpose.
package sink

import (
	"fmt"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// layoutScript prints one line per dataset and per attribute ("created" by type only).
const layoutScript = `
import sys, h5py
f = h5py.File(sys.argv[1], "r")
out = []
def typ(t):
    s = h5py.check_string_dtype(t)
    return "str-%s" % s.encoding if s else str(t)
for name in sorted(f):
    d = f[name]
    out.append("%s %s shape=%s chunks=%s max=%s filter=%s/%s" % (name, typ(d.dtype), d.shape, d.chunks, d.maxshape, d.compression, d.compression_opts))
for k in sorted(f.attrs):
    v = f.attrs[k]
    if k == "created":
        assert len(v) == 20 and v[10] == "T" and v.endswith("Z"), v
        v = "<RFC3339>"
    out.append("@%s %s %s" % (k, typ(f.attrs.get_id(k).dtype), v))
print("\n".join(out))
`

const layoutAttrs = `@clipd_version str-utf-8 test
@created str-utf-8 <RFC3339>
@dtype str-utf-8 float32
@embed_dim int64 512
@ignore_opt_out bool False
@input str-utf-8 list.txt
@input_fingerprint str-utf-8 
@limit int64 0
@model str-utf-8 ViT-B/32
@normalized bool True
@preprocess str-utf-8 exact
@saved_columns str-utf-8 
@shard str-utf-8 0/1
@url_kind str-utf-8 
@weights_sha256 str-utf-8 abc`

// A final file: one HDF5 chunk per string dataset, embeddings in chunks of <= ~1 MiB.
const wantFinalLayout = `embeddings float32 shape=(916, 512) chunks=(512, 512) max=(None, 512) filter=None/None
failed_image_ids str-utf-8 shape=(184,) chunks=(184,) max=(None,) filter=gzip/4
failed_lines int64 shape=(184,) chunks=(184,) max=(None,) filter=None/None
failed_reasons str-utf-8 shape=(184,) chunks=(184,) max=(None,) filter=gzip/4
failed_stages str-utf-8 shape=(184,) chunks=(184,) max=(None,) filter=gzip/4
failed_urls str-utf-8 shape=(184,) chunks=(184,) max=(None,) filter=gzip/4
heights int64 shape=(916,) chunks=(916,) max=(None,) filter=None/None
image_ids str-utf-8 shape=(916,) chunks=(916,) max=(None,) filter=gzip/4
lines int64 shape=(916,) chunks=(916,) max=(None,) filter=None/None
urls str-utf-8 shape=(916,) chunks=(916,) max=(None,) filter=gzip/4
widths int64 shape=(916,) chunks=(916,) max=(None,) filter=None/None
` + layoutAttrs

// A chunk file: HDF5 chunks of ChunkSize rows, seqs datasets.
const wantChunkLayout = `embeddings float32 shape=(500, 512) chunks=(512, 512) max=(None, 512) filter=None/None
failed_image_ids str-utf-8 shape=(100,) chunks=(600,) max=(None,) filter=gzip/4
failed_lines int64 shape=(100,) chunks=(600,) max=(None,) filter=None/None
failed_reasons str-utf-8 shape=(100,) chunks=(600,) max=(None,) filter=gzip/4
failed_seqs int64 shape=(100,) chunks=(600,) max=(None,) filter=None/None
failed_stages str-utf-8 shape=(100,) chunks=(600,) max=(None,) filter=gzip/4
failed_urls str-utf-8 shape=(100,) chunks=(600,) max=(None,) filter=gzip/4
heights int64 shape=(500,) chunks=(600,) max=(None,) filter=None/None
image_ids str-utf-8 shape=(500,) chunks=(600,) max=(None,) filter=gzip/4
lines int64 shape=(500,) chunks=(600,) max=(None,) filter=None/None
seqs int64 shape=(500,) chunks=(600,) max=(None,) filter=None/None
urls str-utf-8 shape=(500,) chunks=(600,) max=(None,) filter=gzip/4
widths int64 shape=(500,) chunks=(600,) max=(None,) filter=None/None
` + layoutAttrs

func TestFileLayout(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import h5py").Run(); err != nil {
		t.Skipf("/usr/bin/python3 with h5py is needed: %v", err)
	}
	dir := t.TempDir()
	attrs := outfile.Attrs{Model: "ViT-B/32", WeightsSHA256: "abc", Preprocess: "exact", Version: "test", Input: "list.txt",
		EmbedDim: 512, Dtype: "float32", Normalized: true}
	w, err := Open(Options{Dir: dir, ChunkSize: 600, Attrs: attrs, HasImageIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	emb := make([]float32, 512)
	for s := int64(0); s < 1100; s++ {
		it := item.Item{Seq: s, Line: s + 2, URL: fmt.Sprintf("http://h/%d.jpg", s), ImageID: fmt.Sprint(s)}
		if s%6 == 1 {
			err = w.AddFailure(item.Failure{Item: it, Stage: "fetch", Reason: "http 404"})
		} else {
			emb[0] = float32(s)
			err = w.Add(Row{Item: it, Embedding: emb})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	chunk := filepath.Join(t.TempDir(), "chunk0.h5")
	b, err := os.ReadFile(outfile.ChunkPath(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chunk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	final, err := Finalize(dir, attrs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{{chunk, wantChunkLayout}, {final, wantFinalLayout}} {
		out, err := exec.Command("/usr/bin/python3", "-W", "ignore", "-c", layoutScript, c.path).CombinedOutput()
		if err != nil {
			t.Fatalf("h5py on %s: %v\n%s", c.path, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s:\n%s\nwant:\n%s", filepath.Base(c.path), got, c.want)
		}
	}
}
