// s3out_test.go: where a run with an s3:// Output writes (its bucket folder, its staging
// folder) and which s3:// outputs are refused before anything is done.

package embed

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
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
