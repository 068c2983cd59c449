// errors.go: the kinds of failure this package reports, as sentinels for errors.Is, so the
// CLI can map them to exit codes without parsing messages.

package weights

import "errors"

// Sentinel kinds; every error this package returns for one of these cases matches it with
// errors.Is, while its message stays a full sentence for the user.
var (
	// ErrInvalidArgument: a bad name, URL, revision, sha256 or option value.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the server answered 404/410 for the weights (or the repository/revision).
	ErrNotFound = errors.New("not found")
	// ErrAccess: the server refused access (401/403): a gated or private repository.
	ErrAccess = errors.New("access denied")
	// ErrMissing: a local path or cached name does not exist or holds no (single) weights file.
	ErrMissing = errors.New("missing")
	// ErrChecksum: the downloaded bytes do not have the expected sha256.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrBadWeights: a file that is not a valid safetensors file.
	ErrBadWeights = errors.New("bad weights")
	// ErrDisk: creating, writing, syncing or renaming a file in the cache failed.
	ErrDisk = errors.New("disk error")
	// ErrNetwork: the download failed after its retries (connection errors, timeouts, 5xx).
	ErrNetwork = errors.New("network error")
	// ErrBusy: another process holds the lock on the cache directory of these weights.
	ErrBusy = errors.New("busy")
)

// kindError is a user-facing message tagged with one of the sentinels above.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.cause }

func newErr(kind error, cause error, msg string) error {
	return &kindError{kind: kind, msg: msg, cause: cause}
}
