// mirror_test.go: Pull and Start against a real SeaweedFS (s3test): what the bucket holds wins,
// untrusted chunks (no checksum, a checksum alone) are removed from the bucket, chunks the
// staging folder discarded go from the bucket too, and chunks only the folder holds are
// uploaded, each after the state file.
package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// put stores data under the run folder's name.
func put(t *testing.T, c *objstore.Client, dir objstore.Location, name string, data []byte) {
	t.Helper()
	if err := c.PutBytes(context.Background(), dir.Join(name), data, nil); err != nil {
		t.Fatal(err)
	}
}

func sum(data []byte) []byte {
	s := sha256.Sum256(data)
	return []byte(hex.EncodeToString(s[:]) + "\n")
}

// keys lists the names under dir.
func keys(t *testing.T, c *objstore.Client, dir objstore.Location) []string {
	t.Helper()
	infos, err := c.List(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		out = append(out, strings.TrimPrefix(in.Key, dir.Key))
	}
	return out
}

func TestPullThenStart(t *testing.T) {
	srv := s3test.Shared(t)
	c := srv.Client(t)
	bucket := srv.Bucket(t)
	remote := objstore.Location{Bucket: bucket, Key: "run/"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	chunk := func(k int) []byte { return []byte(strings.Repeat(string(rune('a'+k)), 1000+k)) }
	state := []byte(`{"format":1}` + "\n")
	put(t, c, remote, sink.StateName, state)
	put(t, c, remote, "Images_Embedded_0.h5", chunk(0)) // good
	put(t, c, remote, "Images_Embedded_0.h5.sha256", sum(chunk(0)))
	put(t, c, remote, "Images_Embedded_1.h5", chunk(1)) // no checksum: untrusted
	put(t, c, remote, "Images_Embedded_2.h5.sha256", sum(chunk(2)))
	damaged := append(chunk(3)[:500:500], 'X') // does not match its checksum
	put(t, c, remote, "Images_Embedded_3.h5", damaged)
	put(t, c, remote, "Images_Embedded_3.h5.sha256", sum(chunk(3)))
	put(t, c, remote, "shard-00000-of-00002/Images_Embedded_0.h5", chunk(0)) // another run's folder
	put(t, c, objstore.Location{Bucket: bucket}, "other-run/Images_Embedded_9.h5", chunk(9))

	dir := t.TempDir()
	// The staging folder holds its own copy of chunk 0 (different: the bucket's wins) and a
	// chunk 4 the bucket lacks (finished, not uploaded before a crash).
	os.WriteFile(filepath.Join(dir, "Images_Embedded_0.h5"), []byte("stale"), 0o644)
	os.WriteFile(filepath.Join(dir, "Images_Embedded_0.h5.sha256"), sum([]byte("stale")), 0o644)
	os.WriteFile(filepath.Join(dir, "Images_Embedded_4.h5"), chunk(4), 0o644)
	os.WriteFile(filepath.Join(dir, "Images_Embedded_4.h5.sha256"), sum(chunk(4)), 0o644)

	m := New(Options{Client: c, Dir: dir, Remote: remote, RetryFor: 10 * time.Second})
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	contents, err := m.Look(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !contents.State || contents.Final != nil || len(contents.Chunks) != 6 {
		t.Fatalf("Look: state %v final %v chunks %v", contents.State, contents.Final, contents.Chunks)
	}
	if err := m.Pull(ctx, contents); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{
		sink.StateName: state, "Images_Embedded_0.h5": chunk(0), "Images_Embedded_0.h5.sha256": sum(chunk(0)),
		"Images_Embedded_3.h5": damaged, "Images_Embedded_4.h5": chunk(4),
	} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != string(want) {
			t.Errorf("staging %s: %q (%v), want the bucket's %q", name, got, err, want)
		}
	}
	for _, name := range []string{"Images_Embedded_1.h5", "Images_Embedded_2.h5.sha256"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("an untrusted %s was pulled", name)
		}
	}
	if got, want := keys(t, c, remote), []string{".clipd-run.json", "Images_Embedded_0.h5", "Images_Embedded_0.h5.sha256",
		"Images_Embedded_3.h5", "Images_Embedded_3.h5.sha256", "shard-00000-of-00002/Images_Embedded_0.h5"}; !slices.Equal(got, want) {
		t.Errorf("after Pull the bucket holds %v, want %v", got, want)
	}

	// sink.Open's verification, as it does it: the damaged chunk goes from the folder.
	for _, k := range []int{0, 3, 4} {
		p := outfile.ChunkPath(dir, k)
		if err := outfile.VerifyChecksum(p); err != nil {
			if k != 3 {
				t.Fatalf("chunk %d: %v", k, err)
			}
			os.Remove(p)
			os.Remove(outfile.ChecksumPath(p))
		} else if k == 3 {
			t.Fatal("the damaged chunk verified")
		}
	}
	var failed error
	if err := m.Start(ctx, func(err error) { failed = err }); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Images_Embedded_5.h5"), chunk(5), 0o644)
	os.WriteFile(filepath.Join(dir, "Images_Embedded_5.h5.sha256"), sum(chunk(5)), 0o644)
	m.Committed(filepath.Join(dir, "Images_Embedded_5.h5"))
	if err := m.Wait(); err != nil || failed != nil {
		t.Fatal(err, failed)
	}
	if got, want := keys(t, c, remote), []string{".clipd-run.json", "Images_Embedded_0.h5", "Images_Embedded_0.h5.sha256",
		"Images_Embedded_4.h5", "Images_Embedded_4.h5.sha256", "Images_Embedded_5.h5", "Images_Embedded_5.h5.sha256",
		"shard-00000-of-00002/Images_Embedded_0.h5"}; !slices.Equal(got, want) {
		t.Errorf("after Start the bucket holds %v, want %v", got, want)
	}
	got, err := c.ReadSmall(ctx, remote.Join("Images_Embedded_4.h5"), 1<<20)
	if err != nil || string(got) != string(chunk(4)) {
		t.Errorf("chunk 4 in the bucket: %q (%v)", got, err)
	}

	// Publish: the final object, then nothing else of the run's folder; the shard folder and
	// the other prefix stay.
	final := filepath.Join(dir, outfile.FinalName)
	os.WriteFile(final, []byte("final"), 0o644)
	if err := m.Publish(ctx, final, map[string]string{"clipd-run-sha256": "abc"}); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(t, c, remote), []string{outfile.FinalName, "shard-00000-of-00002/Images_Embedded_0.h5"}; !slices.Equal(got, want) {
		t.Errorf("after Publish the bucket holds %v, want %v", got, want)
	}
	if got := keys(t, c, objstore.Location{Bucket: bucket, Key: "other-run/"}); len(got) != 1 {
		t.Errorf("another prefix was touched: %v", got)
	}
	info, err := c.Head(ctx, m.FinalLocation())
	if err != nil || info.Metadata["clipd-run-sha256"] != "abc" {
		t.Errorf("the final object's metadata %v (%v)", info.Metadata, err)
	}
}

// A store that cannot be reached is retried for RetryFor, then the error is the store's one
// line (objstore.ErrUnreachable, exit 7 in clipd), saying how long it was retried.
func TestRetryGivesUp(t *testing.T) {
	srv := s3test.Start(t)
	c := srv.Client(t)
	bucket := srv.Bucket(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, sink.StateName), []byte("{}"), 0o644)
	m := New(Options{Client: c, Dir: dir, Remote: objstore.Location{Bucket: bucket, Key: "p"}, RetryFor: 2 * time.Second})
	srv.Kill()
	start := time.Now()
	err := m.put(context.Background(), filepath.Join(dir, sink.StateName))
	if !objstore.Refused(err) || !strings.Contains(err.Error(), "cannot be reached") || !strings.Contains(err.Error(), "retried for 2s") {
		t.Errorf("put to a dead store: %v", err)
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("gave up after %v, before RetryFor", el)
	}
}
