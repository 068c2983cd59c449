// Command fastcost measures what the decoder's fast mode costs in embedding space: for each
// JPEG of a directory it embeds the exact decode and the DCT-scaled (fast) decode with the
// CPU engine and prints the cosine between the two, then the min and mean.
//
//	/usr/bin/python3 tests/reference/make_images.py bench /tmp/jpegs 20
//	/usr/bin/python3 tests/reference/clip_ref.py make-weights --config b32 --seed 1234 \
//	    --naming openai --dtype f32 --gelu quick --out /tmp/b32
//	go run ./bench/fastcost -weights /tmp/b32 -images /tmp/jpegs
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/vecmath"
)

func main() {
	weights := flag.String("weights", "", "weights directory or .safetensors file")
	dir := flag.String("images", "", "directory of .jpg files")
	minSide := flag.Int("min-side", 0, "fast mode's shorter-side floor (0: the model's input size)")
	threads := flag.Int("threads", 0, "CPU engine threads (0: all cores)")
	flag.Parse()
	if err := run(*weights, *dir, *minSide, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "fastcost:", err)
		os.Exit(1)
	}
}

func run(weights, dir string, minSide, threads int) error {
	if weights == "" || dir == "" {
		return fmt.Errorf("-weights and -images are required")
	}
	e, err := engine.Open(engine.Options{WeightsPath: weights, Backend: engine.BackendCPU, Threads: threads})
	if err != nil {
		return err
	}
	defer e.Close()
	info := e.Info()
	if minSide == 0 {
		minSide = info.ImageSize
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("no .jpg files in %s", dir)
	}
	fmt.Printf("engine %s, fast min side %d\n", e.BackendName(), minSide)
	minCos, sum := 2.0, 0.0
	out := make([]float32, 2*info.EmbedDim)
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return err
		}
		ex, err := decode.Decode(data, decode.Options{})
		if err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		fa, err := decode.Decode(data, decode.Options{Mode: decode.Fast, MinSide: minSide})
		if err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		imgs := []engine.Image{
			{RGB: ex.RGB, Width: ex.Width, Height: ex.Height},
			{RGB: fa.RGB, Width: fa.Width, Height: fa.Height},
		}
		if err := e.EmbedImages(imgs, out); err != nil {
			return err
		}
		c := vecmath.Cosine(out[:info.EmbedDim], out[info.EmbedDim:])
		fmt.Printf("%s  exact %dx%d  fast %dx%d  cosine %.6f\n", filepath.Base(n), ex.Width, ex.Height, fa.Width, fa.Height, c)
		minCos = math.Min(minCos, c)
		sum += c
		ex.Release()
		fa.Release()
	}
	fmt.Printf("images %d  min cosine %.6f  mean cosine %.6f\n", len(names), minCos, sum/float64(len(names)))
	return nil
}
