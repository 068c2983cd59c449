// checksum.go: the checksum beside a chunk file (PATH.sha256: the sha256 of the file's bytes),
// written before the chunk is renamed into place and verified before a resume trusts the
// chunk, so that a damaged or altered chunk is never read by libhdf5 nor merged.
package outfile

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/clipd/clipd/internal/filehash"
)

// checksumSuffix is the suffix of a chunk file's checksum file.
const checksumSuffix = ".sha256"

// ChecksumPath is the checksum file of the file at path.
func ChecksumPath(path string) string { return path + checksumSuffix }

// fileSHA256 is the hex sha256 of the bytes of the file at path.
func fileSHA256(path string) (string, error) {
	sum, _, err := filehash.SHA256(path)
	return sum, err
}

// VerifyChecksum checks the file at path against its checksum file; the error says why it
// cannot be trusted: no checksum file (written before checksums, or a crash in between), or
// a mismatch (the file changed after it was written).
func VerifyChecksum(path string) error {
	b, err := os.ReadFile(ChecksumPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no checksum file %s", ChecksumPath(path))
	}
	if err != nil {
		return err
	}
	want := strings.TrimSpace(string(b))
	got, err := fileSHA256(path)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("its sha256 is %s, %s says %.64q", got, ChecksumPath(path), want)
	}
	return nil
}
