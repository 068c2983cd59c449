// lock.go: the exclusive lock on an output folder, so that two clipd processes never write
// one folder at once (one would delete the other's temporaries and overwrite its final file).
// It is a flock on a file in the folder: the kernel drops it when the process ends, kill -9
// included, so a stale lock cannot block a rerun.
package outfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockName is the lock file's name in an output folder. It stays there after the run (removing
// it would let a third process lock a new file while a second still holds the old one).
const LockName = ".clipd.lock"

// ErrLocked: another process holds the output folder's lock.
var ErrLocked = errors.New("output folder in use")

// Lock is a held lock on an output folder.
type Lock struct {
	f *os.File
}

// LockDir takes the exclusive lock on dir (created when missing) for this process, or fails at
// once with an ErrLocked error naming the holder: "another clipd (pid N, started T) is writing
// DIR; ...". Other errors are ErrOutput.
func LockDir(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, WrapWrite(dir, err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, WrapWrite(path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &fileError{class: ErrLocked, msg: fmt.Sprintf(
				"another clipd (%s) is writing %s; wait for it to finish (or stop it), then rerun; or give another --output", holder, dir)}
		}
		return nil, WrapWrite(path, err)
	}
	// Who holds it, for the message of the next process that tries.
	info := fmt.Sprintf("pid %d\nstarted %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(info), 0)
	}
	return &Lock{f: f}, nil
}

// lockHolder reads "pid N, started T" from the lock file f ("pid unknown" while the holder has
// not written it yet).
func lockHolder(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	var pid, started string
	for _, l := range strings.Split(string(b[:n]), "\n") {
		k, v, _ := strings.Cut(l, " ")
		switch k {
		case "pid":
			if _, err := strconv.Atoi(v); err == nil {
				pid = v
			}
		case "started":
			started = v
		}
	}
	if pid == "" {
		return "pid unknown"
	}
	if started == "" {
		return "pid " + pid
	}
	return "pid " + pid + ", started " + started
}

// Unlock releases the lock; safe on nil and twice.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the descriptor drops the flock
	l.f = nil
}
