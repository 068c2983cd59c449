// contain.go: inspect and merge read files that may be damaged or crafted; libhdf5 1.10.8
// itself can crash on a corrupted heap (H5HG_read), which in-process would end clipd with a Go
// runtime dump. So the real binary runs them in a child process of itself: a child that dies
// of a crash becomes one line and exit 3, and the temporary it was writing is removed.
package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// containHDF5 is set by main: commands that read untrusted HDF5 run in a child process. Tests
// that call run() in-process leave it off.
var containHDF5 = false

// childEnv marks the child process.
const childEnv = "CLIPD_CONTAINED_CHILD"

// childExited is a contained command's end: the child printed its own messages, clipd exits
// with its code.
type childExited struct{ code int }

func (e *childExited) Error() string { return "the child process exited" }

// crashRe finds the Go runtime's report of a crash (a signal in C code, a panic, out of memory).
var crashRe = regexp.MustCompile(`(?m)^(panic: |fatal error: |(SIG[A-Z]+): )`)

// contained runs the current command in a child process when containHDF5 is on (in the parent
// it returns handled true and the command's outcome); in the child, or with containment off,
// it returns handled false and the caller runs the command itself. crashMsg is the one line
// for a crash, with {signal} for what ended the child ("SIGSEGV"); temps are removed after one.
func contained(cCtx *cli.Context, crashMsg string, temps ...string) (handled bool, err error) {
	if os.Getenv(childEnv) != "" {
		crashHook()
		return false, nil
	}
	if !containHDF5 {
		return false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, nil // run it here, uncontained
	}
	cmd := exec.CommandContext(cCtx.Context, self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout = os.Stdin, cCtx.App.Writer
	var stderr boundedBuffer
	cmd.Stderr = &stderr
	// A signal to clipd (Ctrl-C, SIGTERM, timeout -s INT) reaches the child as SIGINT, which
	// stops it cleanly (exit 130).
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return false, nil // could not start it: run it here
	}
	code := cmd.ProcessState.ExitCode()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled() && (ws.Signal() == syscall.SIGINT || ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGHUP):
		return true, context.Canceled // stopped before it could handle the signal itself
	case ws.Signaled() && ws.Signal() == syscall.SIGPIPE:
		return true, &childExited{code: 128 + int(syscall.SIGPIPE)} // its reader went away (clipd inspect | head)
	}
	m := crashRe.FindSubmatch(stderr.Bytes())
	if ws.Signaled() || (code == exitUsage && m != nil) {
		for _, t := range temps {
			os.Remove(t)
		}
		sig := "a crash"
		switch {
		case ws.Signaled():
			sig = ws.Signal().String()
		case len(m[2]) > 0:
			sig = string(m[2])
		case bytes.HasPrefix(m[0], []byte("panic")):
			sig = "a panic"
		}
		return true, outfile.InputErrorf("%s", strings.ReplaceAll(crashMsg, "{signal}", sig))
	}
	cCtx.App.ErrWriter.Write(stderr.Bytes())
	return true, &childExited{code: code}
}

// crashHook, for tests of the containment: CLIPD_TEST_CHILD_CRASH=1 makes the child crash as
// libhdf5 does on a corrupted heap (SIGSEGV).
func crashHook() {
	if os.Getenv("CLIPD_TEST_CHILD_CRASH") == "1" {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		time.Sleep(time.Second)
	}
}

// boundedBuffer keeps the first MiB written to it (a child's messages; a crash dump's start).
type boundedBuffer struct{ bytes.Buffer }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := 1<<20 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
