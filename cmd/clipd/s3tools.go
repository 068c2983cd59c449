// s3tools.go: what merge, export and inspect share for s3:// locations: the client, a
// staging folder for the local copies libhdf5 needs (removed at the end, on errors too, and
// by the parent of a contained child whatever the child's end), the free-space check before
// downloading, the final file of an output prefix, and messages that name the s3://
// locations instead of their local copies.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// stagingEnv passes a contained command's staging folder from the parent, which made it and
// removes it, to the child, which uses it.
const stagingEnv = "CLIPD_STAGING_DIR"

// stagingUsage is the --staging flag's help.
const stagingUsage = "`DIR` for the local copies of s3:// files (default: TMPDIR, else /tmp); a private folder in it is removed at the end"

// staging is a private folder for the local copies of objects and of files to upload.
type staging struct {
	dir string
	own bool // made here: close removes it
}

// newStaging makes a private folder under base ("" = os.TempDir()); in a contained
// command's child it is the parent's folder.
func newStaging(base, what string) (*staging, error) {
	if d := os.Getenv(stagingEnv); d != "" && os.Getenv(childEnv) != "" {
		return &staging{dir: d}, nil
	}
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "clipd-"+what+"-")
	if err != nil {
		return nil, withExitCode(exitOutput, fmt.Errorf("staging folder for s3:// files: %w; give --staging a writable folder (or set TMPDIR)", outfile.WrapWrite(base, err)))
	}
	os.Setenv(stagingEnv, dir) // for a contained child
	return &staging{dir: dir, own: true}, nil
}

// close removes the folder and all in it (a nil staging is nothing to close).
func (s *staging) close() {
	if s == nil || !s.own {
		return
	}
	os.RemoveAll(s.dir)
	os.Unsetenv(stagingEnv)
}

// path is the local path of rel ("a/b" with slashes) in the folder; its folder is made.
func (s *staging) path(rel string) (string, error) {
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", outfile.WrapWrite(filepath.Dir(p), err)
	}
	return p, nil
}

// need fails, before anything is downloaded, when the folder's disk has less than n bytes
// free (when it cannot tell, it lets the copies fail).
func (s *staging) need(n int64, what string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * st.Bsize
	if free >= n {
		return nil
	}
	return withExitCode(exitOutput, fmt.Errorf("%s needs about %s of disk in %s, which has %s free: give --staging a folder on a larger disk (or set TMPDIR)",
		what, humanBytes(n), filepath.Dir(s.dir), humanBytes(free)))
}

// download copies the object into the folder at rel, streaming; it returns the local path.
func (s *staging) download(ctx context.Context, c *objstore.Client, l objstore.Location, rel string) (string, error) {
	p, err := s.path(rel)
	if err != nil {
		return "", err
	}
	if _, err := c.Download(ctx, l, p); err != nil {
		return "", s3Error(err)
	}
	// For the tests of the containment: CLIPD_TEST_CHILD_CRASH=after-download makes the child
	// crash with its copy on disk, which its parent must remove.
	if os.Getenv(childEnv) != "" && os.Getenv("CLIPD_TEST_CHILD_CRASH") == "after-download" {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		time.Sleep(time.Second)
	}
	return p, nil
}

// s3Client is the client of the global --s3-* flags and the AWS configuration.
func s3Client(ctx context.Context, opt objstore.Options) (*objstore.Client, error) {
	c, err := objstore.New(ctx, opt)
	if err != nil {
		return nil, s3Error(err)
	}
	return c, nil
}

// parseS3 reads an s3:// argument; a malformed one is a usage error.
func parseS3(what, s string) (objstore.Location, error) {
	l, err := objstore.Parse(s)
	if err != nil {
		if what == "" {
			return l, usageErrorf("%v", err)
		}
		return l, usageErrorf("%s: %v", what, err)
	}
	return l, nil
}

// s3Error gives an object-storage error its exit code: a missing object is bad input (3);
// a refusal (credentials, access, bucket, endpoint) is 7 by exitCode already.
func s3Error(err error) error {
	if err != nil && errors.Is(err, objstore.ErrNotFound) && !objstore.Refused(err) {
		return withExitCode(exitInput, err)
	}
	return err
}

// finalObject is the file clipd inspect and clipd export read for an s3:// argument: the
// object itself when its key ends in ".h5", else the prefix's Images_Embedded.h5. A prefix
// without one is an ErrInput error that says what it holds and what to do, as for a folder.
func finalObject(ctx context.Context, c *objstore.Client, l objstore.Location) (objstore.Info, error) {
	if strings.HasSuffix(l.Key, ".h5") {
		info, err := c.Head(ctx, l)
		return info, s3Error(err)
	}
	info, err := c.Head(ctx, l.Dir().Join(outfile.FinalName))
	if !errors.Is(err, objstore.ErrNotFound) || objstore.Refused(err) {
		return info, s3Error(err)
	}
	found, err := merge.FindObjects(ctx, c, l)
	if err != nil {
		return info, s3Error(err)
	}
	prefix := l.Dir().String()
	var done []string
	for _, o := range found.Objects {
		done = append(done, strings.TrimPrefix(o.Key, l.Dir().Key))
	}
	more := ""
	if len(found.Unfinished) > 0 {
		more = fmt.Sprintf(", %d unfinished", len(found.Unfinished))
	}
	return info, outfile.InputErrorf("%s has no %s but %d shard %s (%s%s): join them with \"clipd merge %s\", or inspect one: clipd inspect %s",
		prefix, outfile.FinalName, len(done), countNoun(len(done), "file", "files"), shortList(done), more, prefix, found.Objects[0].Location)
}

// localNames words errors about local copies with the s3:// locations they are copies of.
type localNames struct{ pairs []string } // local, remote, ...

func (n *localNames) add(local, remote string) { n.pairs = append(n.pairs, local, remote) }

// rename is err with each local copy's path replaced by its location (the error's class,
// and so its exit code, kept).
func (n *localNames) rename(err error) error {
	if err == nil || len(n.pairs) == 0 {
		return err
	}
	msg := strings.NewReplacer(n.pairs...).Replace(err.Error())
	if msg == err.Error() {
		return err
	}
	return &renamedError{msg: msg, err: err}
}

type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }

// fetchFinal downloads the file clipd inspect and clipd export read for the s3:// argument
// arg (finalObject) into stg; it returns the local copy and the object's location.
func fetchFinal(ctx context.Context, opt objstore.Options, stg *staging, arg, what string) (local, remote string, err error) {
	l, err := parseS3("", arg)
	if err != nil {
		return "", "", err
	}
	c, err := s3Client(ctx, opt)
	if err != nil {
		return "", "", err
	}
	// A HEAD of an object in a missing bucket is a plain 404: ask the bucket first (exit 7).
	if err := c.CheckBucket(ctx, l.Bucket); err != nil {
		return "", "", err
	}
	info, err := finalObject(ctx, c, l)
	if err != nil {
		return "", "", err
	}
	if err := stg.need(info.Size, what); err != nil {
		return "", "", err
	}
	local, err = stg.download(ctx, c, info.Location, "src/"+objstore.LocalName(info.Location))
	if err != nil {
		return "", "", err
	}
	return local, info.Location.String(), nil
}
