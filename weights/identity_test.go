// identity_test.go: FileSHA256 hashes the file's bytes (a sidecar never stands in for them),
// remembers the hash for exactly one version of the file, and hashes again after any change:
// in place with the size and mtime restored, by a rename over it, or while being read.
package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// identityOf calls FileSHA256 and returns the identity and whether the file was read (by
// the package's hash counter, not by the Hashed field alone).
func identityOf(t *testing.T, file, cache string) (Identity, bool) {
	t.Helper()
	before := hashCount.Load()
	id, err := FileSHA256(file, cache)
	if err != nil {
		t.Fatalf("FileSHA256(%s): %v", file, err)
	}
	read := hashCount.Load() != before
	if read != id.Hashed {
		t.Fatalf("Hashed = %v, but the file was read: %v", id.Hashed, read)
	}
	return id, read
}

func TestFileSHA256(t *testing.T) {
	old := racyWindow
	racyWindow = 0 // the files here are seconds old at most; the racy guard has its own test
	t.Cleanup(func() { racyWindow = old })
	dir, cache := t.TempDir(), t.TempDir()
	file := filepath.Join(dir, "model.safetensors")
	a, b := []byte(strings.Repeat("a", 4096)), []byte(strings.Repeat("b", 4096))
	if err := os.WriteFile(file, a, 0o644); err != nil {
		t.Fatal(err)
	}
	// A sidecar that records another sum (the weights swapped under it) is not believed.
	if err := os.WriteFile(file+".sha256", []byte(sumOf(b)+"  model.safetensors\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, read := identityOf(t, file, cache)
	if id.SHA256 != sumOf(a) || !read || id.Recorded != sumOf(b) {
		t.Fatalf("first: sha256 %s read %v recorded %s; want %s, read, recorded %s", id.SHA256, read, id.Recorded, sumOf(a), sumOf(b))
	}
	if got, err := SHA256(file); err != nil || got != sumOf(a) {
		t.Errorf("SHA256 = %s, %v; want the file's %s, not its sidecar's", got, err, sumOf(a))
	}

	// Unchanged: remembered, not read again.
	for i := 0; i < 3; i++ {
		if id, read := identityOf(t, file, cache); read || id.SHA256 != sumOf(a) {
			t.Fatalf("unchanged file, call %d: read %v, sha256 %s", i, read, id.SHA256)
		}
	}

	// Rewritten in place (same inode, same size) with its mtime put back, as cp -p does.
	st, _ := os.Stat(file)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if id, read := identityOf(t, file, cache); !read || id.SHA256 != sumOf(b) {
		t.Fatalf("rewritten in place: read %v, sha256 %s; want %s", read, id.SHA256, sumOf(b))
	}
	if _, read := identityOf(t, file, cache); read {
		t.Fatal("the rewritten file, unchanged since, was read again")
	}

	// Replaced by a rename (a new inode) with the same size and mtime.
	tmp := filepath.Join(dir, "new")
	if err := os.WriteFile(tmp, a, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, st.ModTime(), st.ModTime())
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	if id, read := identityOf(t, file, cache); !read || id.SHA256 != sumOf(a) {
		t.Fatalf("replaced by a rename: read %v, sha256 %s; want %s", read, id.SHA256, sumOf(a))
	}

	// A touch (a new mtime and ctime) is another version: read again.
	if err := os.Chtimes(file, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, read := identityOf(t, file, cache); !read {
		t.Fatal("a touched file was not read again")
	}

	// Unchanged() tells the version hashed from a file changed since.
	id, _ = identityOf(t, file, cache)
	if err := id.Unchanged(); err != nil {
		t.Fatalf("Unchanged on an unchanged file: %v", err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := id.Unchanged(); !errors.Is(err, ErrBadWeights) {
		t.Fatalf("Unchanged after a rewrite: %v, want ErrBadWeights", err)
	}
}

// A file changed within racyWindow of being hashed is hashed again next time: its next
// change could fall in the same timestamp granule and go unseen.
func TestFileSHA256RacyWindow(t *testing.T) {
	old := racyWindow
	racyWindow = time.Hour
	t.Cleanup(func() { racyWindow = old })
	file, cache := filepath.Join(t.TempDir(), "w.safetensors"), t.TempDir()
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, read := identityOf(t, file, cache); !read {
			t.Fatalf("call %d: a file changed just now was taken from the cache", i)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, hashesDir)); len(ents) != 0 {
		t.Errorf("%d records written for a file changed just now", len(ents))
	}
}

// A cache that cannot be written only costs time: the hash is right, every time.
func TestFileSHA256ReadOnlyCache(t *testing.T) {
	old := racyWindow
	racyWindow = 0
	t.Cleanup(func() { racyWindow = old })
	file := filepath.Join(t.TempDir(), "w.safetensors")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(cache, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if id, read := identityOf(t, file, cache); !read || id.SHA256 != sumOf([]byte("x")) {
			t.Fatalf("call %d: read %v sha256 %s", i, read, id.SHA256)
		}
	}
}

// BenchmarkFileSHA256 is the cost of a run's weights identity for a 256 MiB file: hashed
// (a first run, or a changed file) and remembered (every later run).
func BenchmarkFileSHA256(b *testing.B) {
	old := racyWindow
	racyWindow = 0
	b.Cleanup(func() { racyWindow = old })
	file := filepath.Join(b.TempDir(), "model.safetensors")
	if err := os.WriteFile(file, make([]byte, 256<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("hashed", func(b *testing.B) {
		b.SetBytes(256 << 20)
		for i := 0; i < b.N; i++ {
			if id, err := FileSHA256(file, b.TempDir()); err != nil || !id.Hashed {
				b.Fatal(err, id.Hashed)
			}
		}
	})
	b.Run("remembered", func(b *testing.B) {
		cache := b.TempDir()
		FileSHA256(file, cache)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if id, err := FileSHA256(file, cache); err != nil || id.Hashed {
				b.Fatal(err, id.Hashed)
			}
		}
	})
}
