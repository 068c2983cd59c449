// s3out_test.go: where a run with an s3:// Output writes (its bucket folder, its staging
// folder) and which s3:// outputs are refused before anything is done.

package embed

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

func TestOutputDirS3(t *testing.T) {
	for _, c := range []struct {
		out   string
		shard Shard
		want  string
	}{
		{"s3://b/p", Shard{}, "s3://b/p"},
		{"s3://b/p/", Shard{}, "s3://b/p"},
		{"s3://b/p", Shard{Index: 3, Count: 16}, "s3://b/p/shard-00003-of-00016"},
		{"s3://b/p/", Shard{Index: 0, Count: 2}, "s3://b/p/shard-00000-of-00002"},
		{"s3://b", Shard{Index: 1, Count: 2}, "s3://b/shard-00001-of-00002"},
		{"s3://b/", Shard{}, "s3://b/"},
		{"out", Shard{Index: 1, Count: 2}, filepath.Join("out", "shard-00001-of-00002")},
	} {
		if got := (Config{Output: c.out, Shard: c.shard}).OutputDir(); got != c.want {
			t.Errorf("OutputDir of %s shard %s = %q, want %q", c.out, c.shard, got, c.want)
		}
	}
}

func TestStagingDir(t *testing.T) {
	cache := t.TempDir()
	a := Config{Output: "s3://b/p", CacheDir: cache}
	b := Config{Output: "s3://b/p/", CacheDir: cache}
	other := Config{Output: "s3://b/q", CacheDir: cache}
	sa, sb, so := a.StagingDir(), b.StagingDir(), other.StagingDir()
	if sa == "" || sa != sb || sa == so || !strings.HasPrefix(sa, filepath.Join(cache, "staging")+string(filepath.Separator)) {
		t.Errorf("default staging folders: %q %q %q: want one folder under %s/staging per prefix", sa, sb, so, cache)
	}
	a.Shard = Shard{Index: 1, Count: 2}
	if got := a.StagingDir(); got != filepath.Join(sa, "shard-00001-of-00002") {
		t.Errorf("a shard's staging folder %q", got)
	}
	given := Config{Output: "s3://b/p", Staging: "/tmp/st", Shard: Shard{Index: 0, Count: 2}}
	if got := given.StagingDir(); got != filepath.Join("/tmp/st", "shard-00000-of-00002") {
		t.Errorf("--staging with a shard: %q", got)
	}
	if got := (Config{Output: "out"}).StagingDir(); got != "" {
		t.Errorf("a local output has a staging folder %q", got)
	}
}

func TestCheckS3Output(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string // "" = accepted
	}{
		{Config{Input: "x", Output: "s3://b/out"}, ""},
		{Config{Input: "x", Output: "s3://b/out.h5"}, "wants a prefix"},
		{Config{Input: "x", Output: "s3://b/run/Images_Embedded.h5"}, "wants a prefix"},
		{Config{Input: "x", Output: "s3:///p"}, "names no bucket"},
		{Config{Input: "x", Output: "out", Staging: "/tmp/st"}, "--staging applies only to s3://"},
		{Config{Input: "x", Output: "s3://b/out", Staging: "/tmp/st"}, ""},
	} {
		err := c.cfg.withDefaults().check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.cfg.Output, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrConfig)):
			t.Errorf("%s (staging %q): %v, want a configuration error saying %q", c.cfg.Output, c.cfg.Staging, err, c.want)
		}
	}
}

// The final object's metadata tells this run's file (complete) from another run's (refused,
// saying what differs), also when the key is too long to be kept whole (its sha256 only),
// and refuses an object clipd did not write.
func TestFinalMatches(t *testing.T) {
	attrs := outfile.Attrs{Input: "/data/urls.txt", InputFingerprint: "sha256:ab size:3", Shard: "0/1", WeightsSHA256: "w", Dtype: "float32", EmbedDim: 512}
	info := func(meta map[string]string) objstore.Info {
		return objstore.Info{Location: objstore.Location{Bucket: "b", Key: "p/" + FinalName}, Metadata: meta}
	}
	if err := finalMatches(info(runKeyMeta(sink.KeyOf(attrs))), attrs); !errors.Is(err, sink.ErrAlreadyComplete) {
		t.Errorf("the same run: %v", err)
	}
	other := attrs
	other.Limit = 10
	err := finalMatches(info(runKeyMeta(sink.KeyOf(attrs))), other)
	if !errors.Is(err, sink.ErrRunMismatch) || !strings.Contains(err.Error(), "limit 0, now 10") || !strings.Contains(err.Error(), "s3://b/p/"+FinalName) {
		t.Errorf("another --limit: %v", err)
	}
	long := attrs
	long.Input = "/" + strings.Repeat("d", 3000)
	meta := runKeyMeta(sink.KeyOf(long))
	if _, whole := meta[metaRunKey]; whole {
		t.Fatalf("a 3000-byte key kept whole in metadata (%d bytes)", len(meta[metaRunKey]))
	}
	if err := finalMatches(info(meta), long); !errors.Is(err, sink.ErrAlreadyComplete) {
		t.Errorf("the same run, sha256 only: %v", err)
	}
	if err := finalMatches(info(meta), attrs); !errors.Is(err, sink.ErrRunMismatch) || !strings.Contains(err.Error(), "run key differs") {
		t.Errorf("another run, sha256 only: %v", err)
	}
	if err := finalMatches(info(map[string]string{"Clipd-Run-Sha256": runKeySHA256(sink.KeyOf(attrs))}), attrs); !errors.Is(err, sink.ErrAlreadyComplete) {
		t.Errorf("metadata names in another case: %v", err)
	}
	if err := finalMatches(info(nil), attrs); !errors.Is(err, sink.ErrRunMismatch) || !strings.Contains(err.Error(), "not written by clipd embed") {
		t.Errorf("no metadata: %v", err)
	}
}
