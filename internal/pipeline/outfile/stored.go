// stored.go: how a string (a URL, an id, a reason, a saved column) is stored in an HDF5
// string dataset, which holds C strings: a NUL byte would cut the string there, so it is
// written as "%00", the way a URL parser percent-encodes it; every other byte is stored
// as it is.

package outfile

import "strings"

// StoredString is s as the files store it: s with each NUL byte written as "%00". It is
// idempotent (a stored string stores as itself), so a row read back from a file compares
// equal to StoredString of the input it came from.
func StoredString(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "%00")
}

// storedStrings is StoredString of each of ss, copying ss only when one changes.
func storedStrings(ss []string) []string {
	for i, s := range ss {
		if strings.IndexByte(s, 0) < 0 {
			continue
		}
		out := append([]string(nil), ss...)
		for j := i; j < len(out); j++ {
			out[j] = StoredString(out[j])
		}
		return out
	}
	return ss
}
