// exitcodes.go: the one place where an error becomes clipd's exit code and its one-line
// message; the codes are listed in the help (exitCodesHelp).
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/weights"
)

// clipd's exit codes.
const (
	exitOK          = 0   // success
	exitFailure     = 1   // a runtime failure: network, server, engine, anything else
	exitUsage       = 2   // bad usage: unknown command or flag, bad flag value, wrong arguments
	exitInput       = 3   // bad input: a missing file or cache entry, a name or URL not found or refused
	exitBadWeights  = 4   // bad weights: not a valid safetensors/CLIP checkpoint, a sha256 mismatch, or NaN/Inf embeddings
	exitOutput      = 5   // output or disk error: the cache or an output file cannot be written
	exitNothing     = 6   // embed finished without one embedding: an empty input, or every row failed
	exitStorage     = 7   // object storage (s3://) refused or unreachable: credentials, access, bucket, endpoint
	exitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

// exitCodesHelp is appended to the app's help.
const exitCodesHelp = `EXIT CODES:
   0    success
   1    runtime failure (network, server, engine, other)
   2    bad usage (unknown command or flag, bad flag value, wrong arguments)
   3    bad input (missing file or cache entry, name or URL not found or refused)
   4    bad weights (not a valid safetensors/CLIP checkpoint, sha256 mismatch, embeddings not finite)
   5    output or disk error (the cache or an output file cannot be written)
   6    nothing embedded (embed: the input had no rows, or every row failed)
   7    object storage refused or unreachable (s3://: bad credentials, access denied, no such bucket, endpoint unreachable)
   130  interrupted`

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// codedError is an error whose exit code its maker chose (clipd embed: an unreadable input,
// an unwritable output, an interruption with its own message).
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// withExitCode tags err with an exit code; nil stays nil.
func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// exitCode maps an error to clipd's exit code.
func exitCode(err error) int {
	var ue *usageError
	var ce *codedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case objstore.Refused(err): // whichever stage or command met it: the fix is the storage's configuration
		return exitStorage
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, outfile.ErrLocked): // another clipd writes the output folder
		return exitUsage
	case errors.Is(err, embed.ErrInterrupted):
		return exitInterrupted

	case errors.Is(err, embed.ErrNothingEmbedded):
		return exitNothing
	case errors.Is(err, embed.ErrBadWeights):
		return exitBadWeights
	case errors.Is(err, embed.ErrConfig):
		return exitUsage
	case errors.Is(err, embed.ErrInput):
		return exitInput
	case errors.Is(err, embed.ErrOutput):
		return exitOutput
	// merge and inspect. Files that do not agree are bad input, not bad usage: the command
	// line is well formed, and the fix is to give other files.
	case errors.Is(err, outfile.ErrInput), errors.Is(err, outfile.ErrMismatch):
		return exitInput
	case errors.Is(err, outfile.ErrOutput):
		return exitOutput
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, weights.ErrInvalidArgument), errors.Is(err, engine.ErrInvalidArgument):
		return exitUsage
	case errors.Is(err, weights.ErrMissing), errors.Is(err, weights.ErrNotFound), errors.Is(err, weights.ErrAccess),
		errors.Is(err, engine.ErrIO):
		return exitInput
	case errors.Is(err, weights.ErrChecksum), errors.Is(err, weights.ErrBadWeights), errors.Is(err, engine.ErrBadWeights):
		return exitBadWeights
	case errors.Is(err, weights.ErrDisk):
		return exitOutput
	}
	return exitFailure
}

// errorLine is the one line printed for err after "clipd: ".
func errorLine(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	msg := strings.TrimSpace(err.Error())
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
	// The messages cut what they echo (internal/echo); this is the net under them: a line
	// stays readable, and its end, which says what to do, is kept.
	if len(msg) > maxErrorLine {
		head, tail := msg[:maxErrorLine*2/3], msg[len(msg)-maxErrorLine/3:]
		msg = strings.ToValidUTF8(head, "") + " ... " + strings.ToValidUTF8(tail, "")
	}
	return msg
}

// maxErrorLine is the most bytes of a message errorLine prints.
const maxErrorLine = 2048
