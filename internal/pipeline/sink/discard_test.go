// discard_test.go: Discard keeps nothing of what the run added (broken weights): a fresh
// run's chunks with their checksum files, open chunk and state file go; a resumed run keeps the earlier chunks.
package sink

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDiscard(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(testOptions(dir, 4))
	if err != nil {
		t.Fatal(err)
	}
	addAll(t, w, []int64{0, 1, 2, 3, 4, 5}) // one complete chunk, one open
	// The complete chunk is on disk (with its checksum file) before the discard.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, _, chunks := w.Stats(); chunks == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first chunk was not written within 10 s")
		}
	}
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("a discarded fresh run left %v", names)
	}

	// An earlier run's chunks stay; this run's open chunk is not written.
	w, err = Open(testOptions(dir, 4))
	if err != nil {
		t.Fatal(err)
	}
	addAll(t, w, []int64{0, 1, 2, 3, 4})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before := chunkNames(t, dir)
	w, err = Open(testOptions(dir, 4))
	if err != nil {
		t.Fatal(err)
	}
	addAll(t, w, []int64{5, 6})
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	if after := chunkNames(t, dir); len(after) != len(before) {
		t.Errorf("chunks %v after a discarded resume, want the earlier %v", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, StateName)); err != nil {
		t.Errorf("the state file of the earlier run went: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
