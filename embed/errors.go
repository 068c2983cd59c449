// errors.go: how Run's errors are classified, so a caller (the CLI's exit codes) can tell a
// bad configuration from a bad input, an unwritable output and an interruption.

package embed

import "errors"

var (
	// ErrConfig: the Config is impossible or does not match what the output holds (another
	// run's chunks in Output), or another process is writing Output (its lock is held: the
	// error names its pid). Fix the settings or wait; nothing was written.
	ErrConfig = errors.New("bad configuration")
	// ErrInput: the input cannot be opened or read to its end.
	ErrInput = errors.New("bad input")
	// ErrOutput: the output cannot be written (a full disk, a file where a folder should be).
	ErrOutput = errors.New("output error")
	// ErrBadWeights: the weights cannot embed: a test image, or the first batch of images,
	// embeds to NaN or Inf. Nothing was written.
	ErrBadWeights = errors.New("bad weights")
	// ErrInterrupted: ctx ended before the input did; what was done is saved and a rerun
	// with the same Config resumes.
	ErrInterrupted = errors.New("interrupted")
	// ErrNothingEmbedded: the run finished without one embedding: the input had no rows, or
	// every row failed. The output file is written (it lists the failures).
	ErrNothingEmbedded = errors.New("nothing embedded")
)

// kindError is an error with its class: errors.Is matches both the class and the cause.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}
