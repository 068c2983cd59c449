// nonfinite_test.go: embeddings that come out NaN or Inf (issue "hardening", item 8): such an
// image fails alone ("non-finite embedding") where it used to abort the whole run; weights
// that embed even a plain gray image to NaN, or whose whole first batch is non-finite, stop
// the run with exit 4 and leave no output folder behind. Real weights files (the tiny model,
// edited), real images, the CLI, the file read back with h5py.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/weights"
)

// editWeights copies the tiny model (copyWeights) and applies edit to each F32 tensor's
// values in place; it returns the weights folder.
func editWeights(t *testing.T, edit func(name string, shape []int64, v []float32)) string {
	t.Helper()
	dir := copyWeights(t)
	file := filepath.Join(dir, "model.safetensors")
	h, err := weights.ReadHeader(file)
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, file)
	data := 8 + h.HeaderSize
	for _, tn := range h.Tensors {
		if tn.DType != "F32" {
			continue
		}
		raw := b[data+tn.Begin : data+tn.End]
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		edit(tn.Name, tn.Shape, v)
		for i := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v[i]))
		}
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(file + ".sha256")
	return dir
}

// overflowingWeights: the patch embedding's red-channel weights are scaled to ~3e35 (the
// way fp16-trained or badly merged weights overflow): the LayerNorm after it sums a patch's
// features to past float32's range for a saturated red patch (Inf, then NaN through the
// attention into the embedding), while a mid-gray image (red near the CLIP mean) stays in
// range and embeds normally.
func overflowingWeights(t *testing.T) string {
	return editWeights(t, func(name string, shape []int64, v []float32) {
		if name != "visual.conv1.weight" {
			return
		}
		per := int(shape[1] * shape[2] * shape[3]) // [width 3 patch patch]
		plane := int(shape[2] * shape[3])
		for o := 0; o < int(shape[0]); o++ {
			for i := 0; i < plane; i++ {
				v[o*per+i] = 3e35 * (1 + float32(o)/float32(shape[0])) // channel 0: red
			}
		}
	})
}

// solidPNG writes a 40x40 PNG of one color.
func solidPNG(t *testing.T, path string, c color.RGBA) {
	t.Helper()
	im := image.NewRGBA(image.Rect(0, 0, 40, 40))
	for i := 0; i < len(im.Pix); i += 4 {
		im.Pix[i], im.Pix[i+1], im.Pix[i+2], im.Pix[i+3] = c.R, c.G, c.B, 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	gray = color.RGBA{128, 128, 128, 255}
	red  = color.RGBA{255, 0, 0, 255}
)

// imageList writes one PNG per color and a list of their paths (in that order) and returns
// the list and the paths.
func imageList(t *testing.T, colors []color.RGBA) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, c := range colors {
		p := filepath.Join(dir, fmt.Sprintf("img_%02d_%d.png", i, c.R))
		solidPNG(t, p, c)
		paths = append(paths, p)
	}
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return list, paths
}

func withWeights(args []string, w string) []string {
	for i := range args {
		if args[i] == tinyWeights {
			args[i] = w
		}
	}
	return args
}

// Weights that overflow for saturated red: the red images fail alone, as "non-finite
// embedding", the gray ones are embedded (exit 0). Fewer red images than a batch (4), so
// they can never make a first batch of their own, whatever order the engine sees them in.
func TestNonFiniteEmbeddingFailsItsImageOnly(t *testing.T) {
	w := overflowingWeights(t)
	colors := []color.RGBA{gray, red, gray, gray, red, gray, gray, red, gray, gray}
	list, paths := imageList(t, colors)
	out := t.TempDir()
	code, _, se := clipdRun(t, withWeights(embedFlags(list, out, "--decoders", "1"), w)...)
	if code != exitOK {
		t.Fatalf("exit %d, want 0 (the gray images embed): %s", code, se)
	}
	r := readLocal(t, filepath.Join(out, embed.FinalName))
	var wantOK, wantBad []string
	for i, c := range colors {
		if c == red {
			wantBad = append(wantBad, paths[i])
		} else {
			wantOK = append(wantOK, paths[i])
		}
	}
	if strings.Join(r.URLs, ",") != strings.Join(wantOK, ",") {
		t.Errorf("urls %v, want the gray images %v", r.URLs, wantOK)
	}
	if strings.Join(r.Failed, ",") != strings.Join(wantBad, ",") {
		t.Errorf("failed_urls %v, want the red images %v", r.Failed, wantBad)
	}
	for i, reason := range r.Reasons {
		if reason != "non-finite embedding" || r.Stages[i] != "embed" {
			t.Errorf("failure %d: %s / %s, want non-finite embedding / embed", i, r.Reasons[i], r.Stages[i])
		}
	}
	for i, e := range r.Embeddings {
		for _, x := range e {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("row %d holds a non-finite value: %v", i, e)
			}
		}
	}
}

// A first batch that is all non-finite (only red images here, and a URL that fails on its
// own): exit 4, one line, and no output folder: not even the other URL's failure, which
// would make the rerun with good weights "another run".
func TestFirstBatchAllNonFiniteStopsTheRun(t *testing.T) {
	srv := newImageServer(t)
	w := overflowingWeights(t)
	for _, n := range []int{3, 24} { // fewer than a batch (the input ends), and more
		colors := make([]color.RGBA, n)
		for i := range colors {
			colors[i] = red
		}
		list, _ := imageList(t, colors)
		b, _ := os.ReadFile(list)
		os.WriteFile(list, append([]byte(srv.URL+"/missing\n"), b...), 0o644)
		// A shard's folder inside an output folder that does not exist yet: neither is left.
		top := filepath.Join(t.TempDir(), "out")
		out := top
		extra := []string{"--shard", "0/2"} // out/shard-0-of-2: some of the 24 (all but surely)
		if n == 3 {
			extra = nil
		}
		code, _, se := clipdRun(t, withWeights(embedFlags(list, out, extra...), w)...)
		if code != exitBadWeights {
			t.Errorf("%d red images: exit %d, want %d: %s", n, code, exitBadWeights, se)
		}
		oneLine(t, fmt.Sprintf("%d red images", n), se, "are all non-finite (NaN or Inf)")
		if _, err := os.Stat(top); err == nil {
			ents, _ := os.ReadDir(top)
			t.Errorf("%d red images: the output folder was left behind (%d entries)", n, len(ents))
		}
		// The same command with good weights then runs as a first run.
		if code, _, se := clipdRun(t, embedFlags(list, out, extra...)...); code != exitOK {
			t.Errorf("%d red images, rerun with good weights: exit %d: %s", n, code, se)
		}
	}
}

// Weights with a NaN (here in the final projection, which every image goes through): the
// test image catches them before anything is created: exit 4, one line, no output folder.
func TestNaNWeightsRefusedBeforeOutput(t *testing.T) {
	srv := newImageServer(t)
	w := editWeights(t, func(name string, _ []int64, v []float32) {
		if name == "visual.proj" {
			v[len(v)/2] = float32(math.NaN())
		}
	})
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 5))
	out := filepath.Join(t.TempDir(), "out")
	code, _, se := clipdRun(t, withWeights(embedFlags(list, out), w)...)
	if code != exitBadWeights {
		t.Errorf("exit %d, want %d: %s", code, exitBadWeights, se)
	}
	oneLine(t, "NaN weights", se, "the embedding of a plain gray test image is not finite")
	if _, err := os.Stat(out); err == nil {
		t.Error("the output folder was created")
	}
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("%d requests made with broken weights", n)
	}
}
