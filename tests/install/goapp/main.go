// Command goapp is a Go program outside the engine that uses an installed libclipengine
// through the binding's pkg-config link mode, as Go tools built against `make install` will
// (tests/install/check.sh builds it with -tags clipengine_pkgconfig): probes the weights,
// resolves the backend, embeds one synthetic image on the CPU and prints the result.
package main

import (
	"fmt"
	"math"
	"os"

	"github.com/clipd/clipd/cgo/engine"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goapp WEIGHTS")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "goapp:", err)
		os.Exit(1)
	}
}

func run(weights string) error {
	info, err := engine.Probe(weights)
	if err != nil {
		return err
	}
	auto, device, _, err := engine.ResolveBackend(engine.BackendAuto, 0)
	if err != nil {
		return err
	}
	e, err := engine.Open(engine.Options{WeightsPath: weights, Backend: engine.BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		return err
	}
	defer e.Close()
	if e.Info() != info {
		return fmt.Errorf("Probe says %+v, the engine %+v", info, e.Info())
	}
	const w, h = 37, 23
	rgb := make([]byte, w*h*3)
	for i := range rgb {
		rgb[i] = byte(i*7 + i/5)
	}
	out := make([]float32, info.EmbedDim)
	if err := e.EmbedImages([]engine.Image{{RGB: rgb, Width: w, Height: h}}, out); err != nil {
		return err
	}
	var norm float64
	for _, v := range out {
		norm += float64(v) * float64(v)
	}
	norm = math.Sqrt(norm)
	fmt.Printf("clipengine %s, auto -> %v (%s), backend %s, embed_dim %d, params %d, norm %.6f\n",
		engine.Version(), auto, device, e.BackendName(), info.EmbedDim, info.Params(), norm)
	if norm == 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return fmt.Errorf("bad embedding norm %v", norm)
	}
	return nil
}
