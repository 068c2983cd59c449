// s3out.go: a run whose Output is an s3:// prefix. The run writes a local staging folder
// exactly as a local run writes its output folder (same sink, lock, checksums, Finalize);
// package mirror fills that folder from the bucket at the start (so a rerun on any machine
// resumes from the bucket), uploads each finished chunk in the background, and at the end
// uploads the final file (visible only once complete) with the run's key in its metadata,
// then removes the run's chunks and state from the bucket.

package embed

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/mirror"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/internal/pipeline/sink"
	"github.com/clipd/clipd/internal/pipeline/source"
	"github.com/clipd/clipd/weights"
)

// The user metadata of the final object that says which run made it, so that a rerun tells
// "complete" from "another run's" without downloading the file: the sha256 of the run's key
// (sink.RunKey as JSON) always, and the key itself (base64 JSON) when it fits S3's 2 KB of
// metadata, so that a refusal can say what differs.
const (
	metaRunKeySHA256 = "clipd-run-sha256"
	metaRunKey       = "clipd-run"
	maxMetaRunKey    = 1500
)

// remoteDir is the run's folder in the bucket: Output as a prefix, with the shard's folder.
func (c Config) remoteDir() (objstore.Location, error) {
	loc, err := objstore.Parse(c.Output)
	if err != nil {
		return loc, err
	}
	loc = loc.Dir()
	if c.Shard.Count > 1 {
		loc = loc.Join(ShardDirName(c.Shard)).Dir()
	}
	return loc, nil
}

// checkS3Output rejects an s3:// Output that is no prefix.
func (c Config) checkS3Output() error {
	loc, err := objstore.Parse(c.Output)
	if err != nil {
		return fmt.Errorf("--output: %v", err)
	}
	if ext := strings.ToLower(filepath.Ext(strings.TrimSuffix(loc.Key, "/"))); !strings.HasSuffix(loc.Key, "/") && (ext == ".h5" || ext == ".hdf5") {
		dir := strings.TrimSuffix(loc.Key, loc.Base())
		if dir == "" {
			dir = strings.TrimSuffix(loc.Base(), filepath.Ext(loc.Base())) + "/"
		}
		return fmt.Errorf("--output %s names a file, but an s3:// output wants a prefix (the embeddings go to PREFIX/%s): give one such as %s",
			c.Output, outfile.FinalName, objstore.Location{Bucket: loc.Bucket, Key: dir}.String())
	}
	return nil
}

// StagingDir is the local folder a run with an s3:// Output writes before uploading: Staging,
// or CacheDir/staging/<bucket>-<prefix>-<hash of the prefix> (so that a rerun on the same
// machine finds its chunks), with the shard's folder inside for a shard. "" for a local
// Output, or when no cache folder can be named.
func (c Config) StagingDir() string {
	if !objstore.IsURL(c.Output) {
		return ""
	}
	base := c.Staging
	if base == "" {
		loc, err := objstore.Parse(c.Output)
		if err != nil {
			return ""
		}
		cache, err := weights.CacheDir(c.CacheDir)
		if err != nil {
			return ""
		}
		loc = loc.Dir()
		sum := sha256.Sum256([]byte(loc.String()))
		base = filepath.Join(cache, "staging", safeName(loc.Bucket+"-"+strings.TrimSuffix(loc.Key, "/"))+"-"+hex.EncodeToString(sum[:6]))
	}
	if c.Shard.Count > 1 {
		return filepath.Join(base, ShardDirName(c.Shard))
	}
	return base
}

// safeName keeps letters, digits, '-', '_' and '.' of s (others become '_'), at most 64 bytes.
func safeName(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 64)])
}

// s3Output is a run's s3:// side.
type s3Output struct {
	m *mirror.Mirror
}

// openS3 makes the client, checks the bucket (a refusal is exit 7, before anything is
// written) and aborts what killed uploads left.
func (r *run) openS3(ctx context.Context) error {
	opt := r.cfg.S3.Options()
	opt.PartSize = r.cfg.Hooks.S3PartSize
	opt.BeforePart = r.cfg.Hooks.BeforeS3Part
	c, err := objstore.New(ctx, opt)
	if err != nil {
		return withKind(ErrOutput, err)
	}
	loc, err := r.cfg.remoteDir()
	if err != nil {
		return withKind(ErrConfig, err)
	}
	m := mirror.New(mirror.Options{Client: c, Dir: r.dir, Remote: loc, RetryFor: r.cfg.Hooks.S3RetryFor, Logger: r.log})
	if err := m.Check(ctx); err != nil {
		return withKind(ErrOutput, err)
	}
	r.s3 = &s3Output{m: m}
	return nil
}

// s3Finished looks at the bucket before the staging folder is touched: a finished file of
// this run there is ErrAlreadyComplete (its leftover chunks and state are removed), one of
// another run is ErrRunMismatch unless the bucket holds a run's state (a run in progress,
// which sink.Open checks). With NoResume it only lists the run's folder.
func (r *run) s3Finished(ctx context.Context, attrs outfile.Attrs) (mirror.Contents, error) {
	m := r.s3.m
	c, err := m.Look(ctx)
	if err != nil {
		return c, withKind(ErrOutput, err)
	}
	if r.cfg.NoResume {
		return c, nil // s3Pull clears it, under the staging folder's lock
	}
	if c.Final == nil {
		if !c.State && len(c.Chunks) > 0 {
			return c, withKind(ErrConfig, fmt.Errorf("%w: %s holds chunk files but no %s; use --no-resume to discard them, or another --output",
				sink.ErrRunMismatch, r.cfg.OutputDir(), sink.StateName))
		}
		return c, nil
	}
	err = finalMatches(*c.Final, attrs)
	switch {
	case errors.Is(err, sink.ErrAlreadyComplete):
		if err := m.Clear(ctx, mirror.Contents{State: c.State, Chunks: c.Chunks}, false); err != nil {
			return c, withKind(ErrOutput, err)
		}
		return c, err
	case errors.Is(err, sink.ErrRunMismatch) && c.State:
		return c, nil // the state's run replaces it when it finishes, if it is this one
	}
	return c, withKind(ErrConfig, err)
}

// finalMatches says whether the final object info was made by the run with attrs
// (sink.ErrAlreadyComplete) or another (sink.ErrRunMismatch), from its metadata.
func finalMatches(info objstore.Info, attrs outfile.Attrs) error {
	meta := map[string]string{}
	for k, v := range info.Metadata {
		meta[strings.ToLower(k)] = v
	}
	where := info.Location.String()
	if enc, ok := meta[metaRunKey]; ok {
		if b, err := base64.StdEncoding.DecodeString(enc); err == nil {
			var k sink.RunKey
			if json.Unmarshal(b, &k) == nil {
				return sink.Finished(where, k, attrs)
			}
		}
	}
	sum, ok := meta[metaRunKeySHA256]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s was not written by clipd embed (it has no %s metadata); use --no-resume to replace it, or another --output",
			sink.ErrRunMismatch, where, metaRunKeySHA256)
	case sum != runKeySHA256(sink.KeyOf(attrs)):
		return fmt.Errorf("%w: %s was made by another run (its recorded run key differs); use --no-resume to replace it, or another --output",
			sink.ErrRunMismatch, where)
	}
	return fmt.Errorf("%w: %s is complete; use --no-resume to run again, or another --output", sink.ErrAlreadyComplete, where)
}

// runKeyMeta is the final object's user metadata for the run with key k.
func runKeyMeta(k sink.RunKey) map[string]string {
	meta := map[string]string{metaRunKeySHA256: runKeySHA256(k)}
	b, _ := json.Marshal(k)
	if enc := base64.StdEncoding.EncodeToString(b); len(enc) <= maxMetaRunKey {
		meta[metaRunKey] = enc
	}
	return meta
}

func runKeySHA256(k sink.RunKey) string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// s3Pull fills the staging folder from the bucket (after the lock is taken), unless the
// folder already holds this run's finished file (a crash after the merge, before its
// upload): then sink.Open finds it complete and s3Publish uploads it. With NoResume it
// removes the run folder's state, chunks and final object from the bucket instead (sink.Open
// discards the staging folder's). opt is what sink.Open will be given.
func (r *run) s3Pull(ctx context.Context, c mirror.Contents, attrs outfile.Attrs, opt sink.Options) error {
	if r.cfg.NoResume {
		if err := r.s3.m.Clear(ctx, c, true); err != nil {
			return withKind(ErrOutput, err)
		}
		return nil
	}
	if stagedFinal(r.dir, attrs) {
		// Only if the bucket holds no other run in progress (one started with --no-resume
		// since): its state is checked aside, the staging folder keeps the finished file.
		if !c.State {
			return nil
		}
		aside, err := os.MkdirTemp(r.dir, ".bucket-state-")
		if err != nil {
			return withKind(ErrOutput, outfile.WrapWrite(r.dir, err))
		}
		defer os.RemoveAll(aside)
		if err := r.s3.m.PullStateTo(ctx, c, aside); err != nil {
			return withKind(ErrOutput, err)
		}
		o := opt
		o.Dir = aside
		if err := sink.CheckState(o); errors.Is(err, sink.ErrRunMismatch) {
			return withKind(ErrConfig, &renamedError{msg: strings.ReplaceAll(err.Error(), aside, r.outDir), err: err})
		} else if err != nil {
			return withKind(ErrOutput, err)
		}
		return nil
	}
	// The state first: a run that the bucket's state refuses downloads no chunk.
	if err := r.s3.m.PullState(ctx, c); err != nil {
		return withKind(ErrOutput, err)
	}
	if err := sink.CheckState(opt); errors.Is(err, sink.ErrRunMismatch) {
		return withKind(ErrConfig, r.inBucket(err))
	} else if err != nil {
		return withKind(ErrOutput, err)
	}
	if err := r.s3.m.PullChunks(ctx, c); err != nil {
		return withKind(ErrOutput, err)
	}
	return nil
}

// stagedFinal reports whether dir holds the finished file of the run with attrs and no state
// of a run in progress.
func stagedFinal(dir string, attrs outfile.Attrs) bool {
	if _, err := os.Stat(filepath.Join(dir, sink.StateName)); err == nil {
		return false
	}
	f, err := outfile.Open(filepath.Join(dir, outfile.FinalName))
	if err != nil {
		return false
	}
	a, err := outfile.ReadAttrs(f)
	f.Close()
	return err == nil && errors.Is(sink.Finished("", sink.KeyOf(a), attrs), sink.ErrAlreadyComplete)
}

// s3Publish uploads the staged final file, removes the run's chunks and state from the bucket,
// and then the final file from the staging folder (its lock file stays, as in any output
// folder).
func (r *run) s3Publish(ctx context.Context, final string, attrs outfile.Attrs) error {
	if err := r.s3.m.Publish(ctx, final, runKeyMeta(sink.KeyOf(attrs))); err != nil {
		if ctx.Err() != nil {
			return interrupted(0)
		}
		return withKind(ErrOutput, fmt.Errorf("%w; the finished file is in %s: rerun the same command to upload it", err, final))
	}
	if err := outfile.Remove(final); err != nil {
		r.log.Warn("cannot remove the uploaded file from the staging folder", "path", final, "err", err.Error())
	}
	return nil
}

// stagingRowBytes is what one row takes in a chunk file and again in the final file besides
// its embedding: its URL (about 100 bytes), id, line, seq, width and height, and the HDF5
// overhead of variable-length strings.
const stagingRowBytes = 200

// checkStagingSpace says in one warning line when the staging folder's file system has less
// free space than the run is expected to need: the chunks of all the run's rows, and at the
// end the final file beside them (about as large), less the chunks already staged. It can
// tell only when the number of rows is known (a folder's files, or --limit).
func (r *run) checkStagingSpace(info source.Info, embedDim int) {
	rows := int64(0)
	if info.TotalRows > 0 {
		rows = info.TotalRows / int64(max(r.cfg.Shard.Count, 1))
	}
	if r.cfg.Limit > 0 && (rows == 0 || r.cfg.Limit < rows) {
		rows = r.cfg.Limit
	}
	if rows == 0 {
		return
	}
	width := int64(4)
	if r.cfg.Dtype == "float16" {
		width = 2
	}
	need := 2 * rows * (int64(embedDim)*width + stagingRowBytes)
	chunks, _ := outfile.ListChunks(r.dir)
	for _, c := range chunks {
		if st, err := os.Stat(c.Path); err == nil {
			need -= st.Size()
		}
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(r.dir, &fs) != nil {
		return
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < need {
		r.log.Warn(fmt.Sprintf("the staging folder %s has %s free, and this run is expected to need about %s (its chunks, then the final file beside them); free space there or pass --staging on a larger disk",
			r.dir, plan.FormatBytes(free), plan.FormatBytes(need)))
	}
}

// inBucket is err, about the staging folder, said of the bucket folder it stages (the state
// that differs came from the bucket).
func (r *run) inBucket(err error) error {
	return &renamedError{msg: strings.ReplaceAll(err.Error(), r.dir, r.outDir+" (staged in "+r.dir+")"), err: err}
}

// renamedError is err with another message.
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }

// uploadFailed is the error of a chunk upload that failed for good.
func (r *run) uploadFailed(err error) error {
	return withKind(ErrOutput, fmt.Errorf("%w; the rows are saved in %s: rerun the same command to resume", err, r.dir))
}
