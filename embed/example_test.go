package embed_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
)

// Embed a list of image URLs into out/Images_Embedded.h5 (here: a server on 127.0.0.1 that
// serves two images and a 404, and the tiny test model of the repository).
func Example() {
	srv := httptest.NewServer(imageHandler())
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "embed-example")
	defer os.RemoveAll(dir)
	list := filepath.Join(dir, "urls.txt")
	os.WriteFile(list, []byte(srv.URL+"/img/img_00.jpg\n"+srv.URL+"/img/img_24.png\n"+srv.URL+"/missing.jpg\n"), 0o644)

	sum, err := embed.Run(context.Background(), embed.Config{
		Input:   list,        // a URL list, a folder of images, or openimages:validation
		Weights: tinyWeights, // a .safetensors file or folder; "" = the cached CLIP B/32
		Output:  filepath.Join(dir, "out"),
		Backend: engine.BackendCPU,
		// Only because this example's server is on 127.0.0.1: a real list must not reach
		// into private networks, and clipd refuses them by default.
		AllowPrivateNetworks: true,
	}, embed.Events{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d rows, %d failed (%s)\n", filepath.Base(sum.Output), sum.Rows, sum.Failures, sum.FailureReasons[0].Reason)
	// Output: Images_Embedded.h5: 2 rows, 1 failed (http 404)
}
