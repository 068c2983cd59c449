// npy.go: the NumPy .npy v1.0 header, written by hand so that a part's embeddings can be
// streamed to disk after it (the header holds the row count, known before the first row).
package export

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// npyMagic starts every .npy file; 1, 0 is format version 1.0.
const npyMagic = "\x93NUMPY\x01\x00"

// NPYHeader is the header of a C-order (rows, cols) array of descr ("<f2" or "<f4"): magic,
// version, the header length and the dict, padded with spaces and ended by a newline so that
// the data starts at a multiple of 64 bytes, as the format asks.
func NPYHeader(descr string, rows int64, cols int) ([]byte, error) {
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }", descr, rows, cols)
	total := len(npyMagic) + 2 + len(dict) + 1
	total = (total + 63) / 64 * 64
	hlen := total - len(npyMagic) - 2
	if hlen > 0xffff {
		return nil, fmt.Errorf("npy header of %d bytes: too long for format 1.0", hlen)
	}
	b := make([]byte, 0, total)
	b = append(b, npyMagic...)
	b = binary.LittleEndian.AppendUint16(b, uint16(hlen))
	b = append(b, dict...)
	b = append(b, strings.Repeat(" ", hlen-len(dict)-1)...)
	return append(b, '\n'), nil
}
