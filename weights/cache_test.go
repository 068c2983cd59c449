// cache_test.go: the cache directory's precedence, cache names, WeightsFile's choice of
// file, and Resolve for a path, a directory, a cached name and a missing one.
package weights

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheDirPrecedence(t *testing.T) {
	t.Setenv("CLIPD_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	check := func(override, want string) {
		t.Helper()
		got, err := CacheDir(override)
		if err != nil || got != want {
			t.Errorf("CacheDir(%q) = %q, %v; want %q", override, got, err, want)
		}
	}
	check("", "/home/u/.cache/clipd")
	t.Setenv("XDG_CACHE_HOME", "relative/ignored")
	check("", "/home/u/.cache/clipd")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	check("", "/xdg/clipd")
	t.Setenv("CLIPD_CACHE", "/env-cache")
	check("", "/env-cache")
	check("/flag", "/flag")
	d, _ := ModelDir("/flag", "openai/clip-vit-base-patch32")
	if d != "/flag/weights/openai/clip-vit-base-patch32" {
		t.Errorf("ModelDir = %s", d)
	}
}

func TestCacheNames(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      DefaultModel,
		"laion/CLIP-ViT-B-32-laion2B-s34B-b79K": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
		"gpt2":                                  "gpt2",
		"https://example.com/m/ViT-B-32.safetensors":      "example.com/m/ViT-B-32",
		"https://example.com:8443/a%20b/../w.safetensors": "example.com_8443/a_b/w",
		"http://127.0.0.1:9/x.safetensors?sig=1":          "127.0.0.1_9/x",
		"https://example.com/.safetensors":                "example.com/weights",
	} {
		got, err := CacheName(in)
		if err != nil || got != want {
			t.Errorf("CacheName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"a/b/c", "../x", "a/..", "-x/y", "a b", "http://example.com/x.safetensors"} {
		if _, err := CacheName(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("CacheName(%q): err = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWeightsFile(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		files []string
		want  string // "" for an error
	}{
		{[]string{"model.safetensors", "open_clip_model.safetensors", "config.json"}, "model.safetensors"},
		{[]string{"open_clip_model.safetensors", "other.safetensors"}, "open_clip_model.safetensors"},
		{[]string{"ViT-B-32.safetensors", "ViT-B-32.safetensors.sha256", "x.safetensors.part"}, "ViT-B-32.safetensors"},
		{[]string{"a.safetensors", "b.safetensors"}, ""},
		{[]string{"pytorch_model.bin"}, ""},
	}
	for i, c := range cases {
		dir := filepath.Join(root, string(rune('a'+i)))
		writeFiles(t, dir, c.files...)
		got, err := WeightsFile(dir)
		switch {
		case c.want == "" && !errors.Is(err, ErrMissing):
			t.Errorf("%v: %q, %v; want ErrMissing", c.files, got, err)
		case c.want != "" && (err != nil || got != filepath.Join(dir, c.want)):
			t.Errorf("%v: %q, %v; want %s", c.files, got, err, c.want)
		}
	}
}

func TestResolve(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CLIPD_CACHE", cache)
	local := t.TempDir()
	writeFiles(t, local, "model.safetensors")
	file := filepath.Join(local, "model.safetensors")
	cached, _ := placeByHand(t, cache, "acme/tiny", "tiny_hf_erf_f16")
	def, _ := placeByHand(t, cache, DefaultModel, "tiny_openai_quick_f32")
	writeFiles(t, filepath.Join(cache, "weights", "acme", "interrupted"), "model.safetensors.part", "model.safetensors.part.meta")
	writeFiles(t, filepath.Join(cache, "weights", "acme", "unmarked"), "model.safetensors.part") // no .meta: not resumable
	writeFiles(t, filepath.Join(cache, "weights", "acme", "two"), "a.safetensors", "b.safetensors")

	for _, c := range []struct{ in, dir, want string }{
		{file, "", file},
		{local, "", local},
		{"acme/tiny", "", cached},
		{"acme/tiny", cache, cached},
		{"", "", def},
	} {
		got, err := Resolve(c.in, c.dir)
		if err != nil || got != c.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", c.in, c.dir, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"acme/missing", `run "clipd weights fetch acme/missing" to download it, pass --weights PATH, or place model.safetensors and its config.json in`},
		{"acme/interrupted", `acme/interrupted is an interrupted download in ` + filepath.Join(cache, "weights", "acme", "interrupted") + `: run "clipd weights fetch acme/interrupted" to resume it, or pass --weights PATH`},
		{"acme/unmarked", `(its folder holds no weights file): run "clipd weights fetch acme/unmarked" to download it`},
		{"acme/two", "holds 2 .safetensors files"},
		{filepath.Join(local, "nope.safetensors"), "does not exist"},
		{"./nope", "does not exist"},
		{t.TempDir(), "holds no .safetensors file"},
	} {
		_, err := Resolve(c.in, "")
		if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Resolve(%q): err = %v, want ErrMissing mentioning %q", c.in, err, c.want)
		}
	}
	if _, err := Resolve("acme/tiny", t.TempDir()); !errors.Is(err, ErrMissing) {
		t.Errorf("Resolve in another cache: %v, want ErrMissing", err)
	}
	if _, err := Resolve("not a name", ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Resolve of a bad name: %v, want ErrInvalidArgument", err)
	}
}

func TestRecordedSHA256(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "model.safetensors")
	if RecordedSHA256(f) != "" {
		t.Fatal("a sha256 with nothing recorded")
	}
	sum := strings.Repeat("Ab", 32)
	os.WriteFile(f+".sha256", []byte(sum+"  model.safetensors\n"), 0o644)
	if got := RecordedSHA256(f); got != strings.ToLower(sum) {
		t.Fatalf("from the sidecar: %q", got)
	}
	os.Remove(f + ".sha256")
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"file":"model.safetensors","sha256":"`+strings.Repeat("c", 64)+`"}`), 0o644)
	if got := RecordedSHA256(f); got != strings.Repeat("c", 64) {
		t.Fatalf("from the manifest: %q", got)
	}
}
