// tokenizer_files_test.go: `clipd weights fetch` brings the text tokenizer's vocab.json and
// merges.txt beside the weights, completes caches made before it did, and keeps a copy
// placed by hand.

package weights

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipd/clipd/weights/weightstest"
)

var (
	tinyVocab  = []byte(`{"a</w>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}`)
	tinyMerges = []byte("#version: 0.2\na b\n")
)

func newTokenizerHub(t *testing.T) *weightstest.Hub {
	return weightstest.NewHub(t, map[string]*weightstest.Repo{
		testRepo: {Revision: "v1", Files: map[string][]byte{
			"model.safetensors":     tinyModel(t),
			"open_clip_config.json": tinyConfig,
			"vocab.json":            tinyVocab,
			"merges.txt":            tinyMerges,
		}},
	})
}

const (
	vocabPath  = "/acme/tiny-clip/resolve/v1/vocab.json"
	mergesPath = "/acme/tiny-clip/resolve/v1/merges.txt"
)

func TestFetchTokenizerFiles(t *testing.T) {
	hub := newTokenizerHub(t)
	cache := t.TempDir()
	res, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	mustFile(t, filepath.Join(res.Dir, "vocab.json"), tinyVocab)
	mustFile(t, filepath.Join(res.Dir, "merges.txt"), tinyMerges)
	m, err := ReadManifest(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, x := range m.Extras {
		files = append(files, x.File)
	}
	if !slices.Equal(files, []string{"open_clip_config.json", "vocab.json", "merges.txt"}) || !slices.Equal(m.ExtrasChecked, extraFiles) {
		t.Fatalf("manifest extras %v, checked %v", files, m.ExtrasChecked)
	}
	// cached: nothing is asked for again
	again, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil || !again.Cached {
		t.Fatalf("second fetch: %+v, %v", again, err)
	}
	if _, g := hub.Count(vocabPath); g != 1 {
		t.Fatalf("%d GETs of vocab.json, want 1", g)
	}
	// a cached tokenizer file that went missing makes the cache incomplete: fetched again
	os.Remove(filepath.Join(res.Dir, "merges.txt"))
	if res, err := Fetch(testCtx(t), hubOptions(hub, cache)); err != nil || res.Cached {
		t.Fatalf("fetch with merges.txt gone: %+v, %v; want a fresh download", res, err)
	}
	mustFile(t, filepath.Join(res.Dir, "merges.txt"), tinyMerges)
}

// A cache from a clipd that fetched no tokenizer files (its manifest has no extras_checked)
// gets them on the next fetch, without downloading the weights again.
func TestFetchCompletesAnOlderCache(t *testing.T) {
	hub := newTokenizerHub(t)
	cache := t.TempDir()
	res, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	// make it look like the older clipd's download
	m := res.Manifest
	m.ExtrasChecked = nil
	m.Extras = slices.DeleteFunc(m.Extras, func(x FileRecord) bool { return x.File != "open_clip_config.json" })
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(res.Dir, ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(res.Dir, "vocab.json"))
	os.Remove(filepath.Join(res.Dir, "merges.txt"))

	again, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil || !again.Cached {
		t.Fatalf("fetch of the older cache: %+v, %v; want the cached weights", again, err)
	}
	if _, gets := hub.Count(cdnPath); gets != 1 {
		t.Fatalf("the weights were downloaded again (%d GETs)", gets)
	}
	mustFile(t, filepath.Join(res.Dir, "vocab.json"), tinyVocab)
	mustFile(t, filepath.Join(res.Dir, "merges.txt"), tinyMerges)
	m2, err := ReadManifest(res.Dir)
	if err != nil || !slices.Contains(m2.ExtrasChecked, "vocab.json") || len(m2.Extras) != 3 {
		t.Fatalf("manifest after completing: %+v, %v", m2, err)
	}
	if _, err := Fetch(testCtx(t), hubOptions(hub, cache)); err != nil {
		t.Fatal(err)
	}
	if _, g := hub.Count(mergesPath); g != 2 {
		t.Fatalf("%d GETs of merges.txt, want 2 (the first download and the completion)", g)
	}
}

func TestFetchRefusesBadTokenizerFiles(t *testing.T) {
	for name, body := range map[string][]byte{"merges.txt": []byte("a b\n\xff\xfe\n"), "vocab.json": []byte("[1, 2]")} {
		hub := newTokenizerHub(t)
		hub.Repos[testRepo].Files[name] = body
		_, err := Fetch(testCtx(t), hubOptions(hub, t.TempDir()))
		if !errors.Is(err, ErrBadWeights) || !strings.Contains(err.Error(), name+" is not") {
			t.Errorf("a bad %s: %v", name, err)
		}
	}
}

// Tokenizer files placed by hand beside adopted weights are kept (merges.txt is text, not
// JSON) and recorded; the missing one is fetched from the hub.
func TestAdoptKeepsHandPlacedTokenizerFiles(t *testing.T) {
	cache := t.TempDir()
	dir, _ := placeByHand(t, cache, testRepo, "tiny_openai_quick_f32")
	hand := []byte("#version: 0.2\nx y\n")
	if err := os.WriteFile(filepath.Join(dir, "merges.txt"), hand, 0o644); err != nil {
		t.Fatal(err)
	}
	hub := newTokenizerHub(t)
	hub.Repos[testRepo].Files["model.safetensors"], _ = os.ReadFile(filepath.Join(dir, "model.safetensors"))
	res, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil || !res.Cached || !res.Manifest.Adopted {
		t.Fatalf("fetch = %+v, %v; want the adopted weights", res, err)
	}
	mustFile(t, filepath.Join(dir, "merges.txt"), hand)
	mustFile(t, filepath.Join(dir, "vocab.json"), tinyVocab)
	if _, g := hub.Count(mergesPath); g != 0 {
		t.Fatalf("merges.txt placed by hand was downloaded over (%d GETs)", g)
	}
}
