// openimages_test.go: openimages:<split> against a 127.0.0.1 server holding CSVs in the real
// header shape — each URL kind, the cache (the second Open makes no request), and downloads
// that must not be cached (cut short, or not an image list).

package source

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// openImagesCSV makes n rows in the real shape with a fixed seed; every 5th row has no
// thumbnail, as a few percent of the real rows do.
func openImagesCSV(n int, subset string) string {
	rng := rand.New(rand.NewPCG(2018, 4))
	var b strings.Builder
	b.WriteString(oiHeader + "\n")
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%016x", rng.Uint64())
		thumb := fmt.Sprintf("https://c%d.staticflickr.com/%d/%d_z.jpg", rng.IntN(8), i, rng.Uint32())
		if i%5 == 4 {
			thumb = ""
		}
		fmt.Fprintf(&b, "%s,%s,https://farm%d.staticflickr.com/%d/%d_o.jpg,https://www.flickr.com/photos/u/%d,https://creativecommons.org/licenses/by/2.0/,https://www.flickr.com/people/u/,\"Author, %d\",Title %d,%d,KFukvivpCM5QXl5SqKe41g==,%s,%d\n",
			id, subset, rng.IntN(9), i, rng.Uint32(), i, i, i, 1000+i, thumb, 90*rng.IntN(4))
	}
	return b.String()
}

type oiServer struct {
	url      string
	requests atomic.Int64
}

func newOIServer(t *testing.T, files map[string]string) *oiServer {
	s := &oiServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/openimages"
	return s
}

func TestOpenImagesURLKindsAndCache(t *testing.T) {
	const n = 50
	srv := newOIServer(t, map[string]string{
		"/openimages/2018_04/validation/validation-images-with-rotation.csv": openImagesCSV(n, "validation"),
	})
	cache := t.TempDir()
	opt := Options{OpenImagesBaseURL: srv.url, CacheDir: cache, MirrorBaseURL: "https://mirror.example/"}

	s, err := Open(testContext(t), "openimages:validation", opt)
	if err != nil {
		t.Fatal(err)
	}
	items, fails := drain(t, s)
	if len(items) != n || len(fails) != 0 || srv.requests.Load() != 1 {
		t.Fatalf("%d items %d failures %d requests", len(items), len(fails), srv.requests.Load())
	}
	it := items[0]
	if len(it.ImageID) != 16 || !strings.HasSuffix(it.URL, "_o.jpg") || it.MD5 != "KFukvivpCM5QXl5SqKe41g==" || it.Size != 1000 || it.Line != 2 {
		t.Errorf("original item %+v", it)
	}
	want := filepath.Join(cache, "openimages", "2018_04", "validation", "validation-images-with-rotation.csv")
	if s.Info().Cached != want {
		t.Errorf("cached at %q, want %q", s.Info().Cached, want)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(want), "*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The later Opens read the cache: no request at all.
	opt.OpenImagesURL = ThumbnailURL
	s, err = Open(testContext(t), "openimages:validation", opt)
	if err != nil {
		t.Fatal(err)
	}
	thumbs, fails := drain(t, s)
	if len(thumbs) != n-n/5 || len(fails) != n/5 || fails[0].Reason != "line 6: no thumbnail URL" || fails[0].ImageID == "" {
		t.Fatalf("%d thumbnails, failures %+v", len(thumbs), fails)
	}
	if thumbs[0].MD5 != "" || thumbs[0].Size != 0 || !strings.HasSuffix(thumbs[0].URL, "_z.jpg") {
		t.Errorf("thumbnail item %+v", thumbs[0])
	}

	opt.OpenImagesURL = MirrorURL
	s, err = Open(testContext(t), "openimages:VALIDATION", opt)
	if err != nil {
		t.Fatal(err)
	}
	mirror, _ := drain(t, s)
	if len(mirror) != n || mirror[0].URL != "https://mirror.example/validation/"+items[0].ImageID+".jpg" || mirror[0].MD5 != "" {
		t.Fatalf("mirror item %+v", mirror[0])
	}
	if got := srv.requests.Load(); got != 1 {
		t.Errorf("%d requests after three Opens; the cached file must be reused", got)
	}

	// Sharding and limit work on Open Images like on any input.
	opt.OpenImagesURL = OriginalURL
	opt.Shard, opt.Limit = Shard{1, 2}, 3
	s, err = Open(testContext(t), "openimages:validation", opt)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := drain(t, s)
	if len(part) != 3 || !(Shard{1, 2}).Contains(part[0].URL) {
		t.Errorf("shard+limit items %+v", part)
	}
}

func TestOpenImagesRefusals(t *testing.T) {
	ctx := testContext(t)
	opt := Options{OpenImagesBaseURL: "http://127.0.0.1:1", CacheDir: t.TempDir(), OpenImagesURL: MirrorURL}
	for _, spec := range []string{"openimages:train", "openimages:all"} {
		if _, err := Open(ctx, spec, opt); err == nil || !strings.Contains(err.Error(), "mirror holds only") {
			t.Errorf("%s with mirror URLs: %v", spec, err)
		}
	}
	if _, err := Open(ctx, "openimages:test", Options{URLColumn: "x"}); err == nil || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("URL column with openimages: %v", err)
	}
	if _, err := Open(ctx, "list.txt", Options{OpenImagesURL: ThumbnailURL}); err == nil {
		t.Errorf("thumbnail kind accepted for a plain list")
	}
}

// A download cut short, or a 200 page that is not an image list, leaves nothing in the cache,
// so the next run downloads again.
func TestOpenImagesBadDownloadsNotCached(t *testing.T) {
	csv := openImagesCSV(200, "test")
	var cut atomic.Bool
	cut.Store(true)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch r.URL.Path {
		case "/oi/2018_04/test/test-images-with-rotation.csv":
			if cut.Load() {
				w.Header().Set("Content-Length", fmt.Sprint(len(csv)))
				w.Write([]byte(csv[:len(csv)/2]))
				return // the server closes a short body's connection
			}
			w.Write([]byte(csv))
		case "/oi/2018_04/train/train-images-boxable-with-rotation.csv":
			w.Write([]byte("<html>quota exceeded</html>\n"))
		}
	}))
	defer srv.Close()
	cache := t.TempDir()
	opt := Options{OpenImagesBaseURL: srv.URL + "/oi/", CacheDir: cache}
	local := filepath.Join(cache, "openimages", "2018_04", "test", "test-images-with-rotation.csv")

	if _, err := Open(testContext(t), "openimages:test", opt); err == nil || !strings.Contains(err.Error(), "nothing was cached") {
		t.Fatalf("short download: err = %v", err)
	}
	if _, err := os.Stat(local); !os.IsNotExist(err) {
		t.Fatalf("a partial download was cached: %v", err)
	}
	if _, err := Open(testContext(t), "openimages:train-boxable", opt); err == nil || !strings.Contains(err.Error(), "quota exceeded") {
		t.Fatalf("html page: err = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "openimages", "2018_04", "*", "*")); len(left) != 0 {
		t.Fatalf("files left in the cache: %v", left)
	}

	cut.Store(false)
	var progress int64
	opt.Progress = func(done, total int64) { progress = done }
	s, err := Open(testContext(t), "openimages:test", opt)
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drain(t, s)
	if len(items) != 200 || progress != int64(len(csv)) || requests.Load() != 3 {
		t.Fatalf("%d items, progress %d, %d requests", len(items), progress, requests.Load())
	}
}

// Metadata goes to the same cache as weights, found by the same rule (weights.CacheDir):
// $CLIPD_CACHE first, then $XDG_CACHE_HOME/clipd.
func TestMetadataCacheDir(t *testing.T) {
	root := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(root, "xdg"))
	t.Setenv("CLIPD_CACHE", filepath.Join(root, "clipd-cache"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ImageID,Subset,OriginalURL\nab,validation,https://example.org/a.jpg\n"))
	}))
	defer srv.Close()
	got, err := cachedMetadata(context.Background(), "v7/x.csv", Options{OpenImagesBaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "clipd-cache", "openimages", "v7", "x.csv"); got != want {
		t.Errorf("metadata cached at %s, want %s", got, want)
	}
}
