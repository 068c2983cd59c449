// s3.go: s3:// inputs, read through the S3 API with the run's credentials: a list (text, CSV,
// TSV, gzipped or not) streamed as it comes; a parquet list downloaded first to a temporary
// file, since parquet is read from its footer; tar shards (one object, or a brace or glob
// pattern of them) streamed one after another.

package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/weights"
)

// ObjectStore is what s3:// inputs need of an S3 client; *objstore.Client is one.
type ObjectStore interface {
	Open(ctx context.Context, l objstore.Location) (io.ReadCloser, objstore.Info, error)
	OpenFrom(ctx context.Context, l objstore.Location, offset int64, etag string) (io.ReadCloser, objstore.Info, error)
	Head(ctx context.Context, l objstore.Location) (objstore.Info, error)
	List(ctx context.Context, l objstore.Location) ([]objstore.Info, error)
}

// openS3 opens an s3:// spec: tar shards when the key is a shard's name or a pattern, else
// a list object (parquet when its first bytes say so).
func openS3(ctx context.Context, spec string, opt Options) (*Source, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if opt.OpenImagesURL != "" && opt.OpenImagesURL != OriginalURL {
		return nil, fmt.Errorf("source %s: the Open Images URL kind %q applies only to openimages:<split> inputs", spec, opt.OpenImagesURL)
	}
	loc, err := objstore.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if opt.Objects == nil {
		return nil, fmt.Errorf("source %s: no S3 client to read s3:// inputs with", spec)
	}
	switch {
	case hasPattern(loc.Key) || isTarName(loc.Key):
		return openS3Tar(ctx, spec, opt)
	case loc.Key == "" || strings.HasSuffix(loc.Key, "/"):
		return nil, fmt.Errorf("source %s names a prefix, not an object; give a list object, a tar shard, or a pattern of shards such as %s", spec, loc.Join("*.tar"))
	}
	body, info, err := openObject(ctx, opt, loc)
	if err != nil {
		return nil, objectError(spec, err)
	}
	fingerprint := objectFingerprint(info)
	br := bufio.NewReaderSize(body, 64<<10)
	if magic, _ := br.Peek(len(parquetMagic)); string(magic) == parquetMagic {
		defer body.Close()
		return openS3Parquet(ctx, spec, br, info, fingerprint, opt)
	}
	rc := struct {
		io.Reader
		io.Closer
	}{br, body}
	return start(ctx, rc, spec, loc.Key, opt, rowConfig{fingerprint: fingerprint, totalBytes: info.Size})
}

// objectError words a failure to open an input object: the store's own line, and for a
// missing object what to check.
func objectError(spec string, err error) error {
	if errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("source %w; check the key (aws s3 ls lists a prefix)", err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if strings.HasPrefix(err.Error(), objstore.Scheme) {
		return fmt.Errorf("source %w", err) // the store's line starts with the location
	}
	return fmt.Errorf("source %s: %w", spec, err)
}

// objectFingerprint is what identifies an object's content: its ETag (S3's MD5 of a one-PUT
// object, a hash of the parts' of a multipart one), size and modification time, all of
// which change when the object is written again.
func objectFingerprint(info objstore.Info) string {
	return fmt.Sprintf("etag:%s size:%d modified:%s", info.ETag, info.Size, info.Modified.UTC().Format(time.RFC3339Nano))
}

// openObject streams an object (see objectStream).
func openObject(ctx context.Context, opt Options, loc objstore.Location) (io.ReadCloser, objstore.Info, error) {
	o := &objectStream{ctx: ctx, opt: opt, loc: loc}
	o.idle = opt.ReadIdleTimeout
	if o.idle == 0 {
		o.idle = DefaultReadIdleTimeout
	}
	body, info, err := o.open(func(ctx context.Context) (io.ReadCloser, objstore.Info, error) { return opt.Objects.Open(ctx, loc) })
	if err != nil {
		return nil, objstore.Info{}, err
	}
	o.body, o.info = body, info
	return o, info, nil
}

// maxResumes is how many times in a row an object stream goes on after losing its
// connection (0.5 s, 1 s, 2 s, 4 s and 8 s apart: a store's restart) before it fails.
const maxResumes = 5

// objectStream is an object's body read as a stream that may last as long as the run (a
// list is read as the pipeline takes its rows). A read that waits Options.ReadIdleTimeout for
// a byte gives up on the connection, as for http(s) inputs; a connection lost or given up
// is replaced by a ranged GET of the same version from the byte reached (objstore.OpenFrom),
// up to maxResumes times in a row. Its errors are plain transfer errors (never io.EOF's kin
// before the end): a lost connection is not a truncated file.
type objectStream struct {
	ctx   context.Context
	opt   Options
	loc   objstore.Location
	idle  time.Duration
	info  objstore.Info // the version read (Size: the whole object's)
	n     int64         // bytes read so far
	fails int           // resumes since the last byte

	mu     sync.Mutex
	body   io.ReadCloser // the current GET's
	closed bool
}

// open starts a GET with get under a context of its own, which a stalled read cancels.
func (o *objectStream) open(get func(context.Context) (io.ReadCloser, objstore.Info, error)) (io.ReadCloser, objstore.Info, error) {
	ctx, cancel := context.WithCancel(o.ctx)
	body, info, err := get(ctx)
	if err != nil {
		cancel()
		return nil, objstore.Info{}, err
	}
	return newIdleBody(body, cancel, o.idle, o.loc.String()), info, nil
}

func (o *objectStream) Read(p []byte) (int, error) {
	for {
		n, err := o.body.Read(p)
		o.n += int64(n)
		if n > 0 {
			o.fails = 0
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if o.ctx.Err() != nil {
			return n, o.ctx.Err()
		}
		if rerr := o.resume(err); rerr != nil {
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume replaces the lost body with a ranged GET from o.n on, or says why it cannot.
func (o *objectStream) resume(cause error) error {
	o.body.Close()
	for {
		if o.fails >= maxResumes || o.n >= o.info.Size {
			return fmt.Errorf("%s: %v (read %d of %d bytes; gave up after %d attempts to go on)", o.loc, cause, o.n, o.info.Size, o.fails)
		}
		o.fails++
		select {
		case <-time.After(500 * time.Millisecond << (o.fails - 1)):
		case <-o.ctx.Done():
			return o.ctx.Err()
		}
		body, _, err := o.open(func(ctx context.Context) (io.ReadCloser, objstore.Info, error) {
			return o.opt.Objects.OpenFrom(ctx, o.loc, o.n, o.info.ETag)
		})
		if err != nil {
			if errors.Is(err, objstore.ErrChanged) || errors.Is(err, objstore.ErrNotFound) || (objstore.Refused(err) && !errors.Is(err, objstore.ErrUnreachable)) {
				return errors.New(err.Error()) // the store's line; nothing to wait for
			}
			cause = err
			continue
		}
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			body.Close()
			return os.ErrClosed
		}
		o.body = body
		o.mu.Unlock()
		return nil
	}
}

func (o *objectStream) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return o.body.Close()
}

// openS3Parquet copies a parquet object (its first bytes already in br) into a temporary
// file under the cache, then reads it as a local parquet file whose rows are URLs (never
// paths: an object has no folder on this machine). The file is removed when the Source
// closes. A download rather than ranged reads: parquet-go reads a file in many small pieces,
// each of which would be a request, and a URL list is small beside a disk.
func openS3Parquet(ctx context.Context, spec string, br io.Reader, info objstore.Info, fingerprint string, opt Options) (*Source, error) {
	cache, err := weights.CacheDir(opt.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	dir := filepath.Join(cache, "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("source %s: the parquet file needs a local copy: %w", spec, err)
	}
	f, err := os.CreateTemp(dir, "input-*.parquet")
	if err != nil {
		return nil, fmt.Errorf("source %s: the parquet file needs a local copy: %w", spec, err)
	}
	tmp := &removingFile{File: f}
	n, err := io.Copy(f, br)
	switch {
	case err != nil && ctx.Err() != nil:
		tmp.Close()
		return nil, ctx.Err()
	case err != nil:
		tmp.Close()
		return nil, fmt.Errorf("source %s: downloading the parquet file to %s: %w", spec, dir, err)
	case n != info.Size:
		tmp.Close()
		return nil, fmt.Errorf("source %s: downloaded %d bytes of %d; rerun", spec, n, info.Size)
	}
	return startParquetFile(ctx, f, tmp, spec, fingerprint, n, "", opt)
}

// removingFile removes its file when closed.
type removingFile struct{ *os.File }

func (r *removingFile) Close() error {
	err := r.File.Close()
	os.Remove(r.Name())
	return err
}

// openS3Tar opens tar shards in a bucket: one shard, or a pattern whose braces name keys and
// whose globs (*, ?, [...]) are matched against a listing of the prefix before the first of
// them ('*' does not cross '/', as for local files). Shards are read in the pattern's order,
// each glob's matches in key order.
func openS3Tar(ctx context.Context, spec string, opt Options) (*Source, error) {
	if err := checkTarOptions(spec, opt); err != nil {
		return nil, err
	}
	names, err := expandBraces(spec)
	if err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	var infos []objstore.Info
	var missing, notTar []string
	seen := map[string]bool{}
	add := func(i objstore.Info) {
		if k := i.String(); !seen[k] {
			seen[k] = true
			infos = append(infos, i)
		}
	}
	listed := map[string][]objstore.Info{} // by prefix: a pattern of many globs lists each prefix once
	for _, name := range names {
		loc, err := objstore.Parse(name)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", spec, err)
		}
		if !hasGlob(loc.Key) {
			if !isTarName(loc.Key) {
				notTar = append(notTar, name)
				continue
			}
			info, err := opt.Objects.Head(ctx, loc)
			switch {
			case errors.Is(err, objstore.ErrNotFound):
				missing = append(missing, name)
			case err != nil:
				return nil, objectError(spec, err)
			default:
				add(info)
			}
			continue
		}
		prefix := objstore.Location{Bucket: loc.Bucket, Key: loc.Key[:strings.IndexAny(loc.Key, "*?[")]}
		all, ok := listed[prefix.String()]
		if !ok {
			if all, err = opt.Objects.List(ctx, prefix); err != nil {
				return nil, objectError(spec, err)
			}
			listed[prefix.String()] = all
		}
		for _, o := range all {
			match, err := path.Match(loc.Key, o.Key)
			if err != nil {
				return nil, fmt.Errorf("source %s: bad pattern %s: %w", spec, name, err)
			}
			if match && isTarName(o.Key) {
				add(o)
			}
		}
	}
	switch {
	case len(missing) > 0:
		return nil, fmt.Errorf("source %s: %d of the %d shards named do not exist (%s); check the pattern", spec, len(missing), len(names), firstFew(missing))
	case len(notTar) > 0:
		return nil, fmt.Errorf("source %s: %s is not a tar shard (.tar, .tar.gz, .tgz); a pattern may name tar shards only", spec, firstFew(notTar))
	case len(infos) == 0:
		return nil, fmt.Errorf("source %s: the pattern matches no tar shard (.tar, .tar.gz, .tgz); check it with aws s3 ls", spec)
	}
	shards := make([]tarShard, len(infos))
	h := sha256.New()
	var total int64
	for i, o := range infos {
		shards[i] = tarShard{path: o.String(), name: o.String(), size: o.Size, object: &infos[i]}
		total += o.Size
		fmt.Fprintf(h, "%s\t%d\t%s\n", o.String(), o.Size, o.ETag)
	}
	fingerprint := fmt.Sprintf("shards:%d sha256:%s", len(shards), hex.EncodeToString(h.Sum(nil)))
	return startTar(ctx, spec, shards, fingerprint, total, opt)
}

// openShardObject streams a shard in a bucket, refusing it when it is not the object listed
// when the run began (written again since: the run's identity no longer describes it).
func openShardObject(ctx context.Context, opt Options, want *objstore.Info) (io.ReadCloser, error) {
	body, info, err := openObject(ctx, opt, want.Location)
	if err != nil {
		return nil, err
	}
	if info.ETag != want.ETag || info.Size != want.Size {
		body.Close()
		return nil, fmt.Errorf("%s was written again since the run began (ETag %s, size %d; now %s, %d): the input changed under the run; rerun with --no-resume to start over on the new shards", want, want.ETag, want.Size, info.ETag, info.Size)
	}
	return body, nil
}
