// names.go: the names of the files in an output directory: the final file, its chunk files
// while a run writes them, and their temporaries.
package outfile

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// File names inside an output directory.
const (
	FinalName   = "Images_Embedded.h5"
	chunkPrefix = "Images_Embedded_"
	tmpSuffix   = ".tmp" // a file being written; renamed without it when complete
)

var chunkRe = regexp.MustCompile(`^Images_Embedded_([0-9]+)\.h5$`)

// ChunkPath is the path of chunk k in dir.
func ChunkPath(dir string, k int) string {
	return filepath.Join(dir, chunkPrefix+strconv.Itoa(k)+".h5")
}

// Chunk is a complete chunk file.
type Chunk struct {
	K    int
	Path string
}

// ListChunks returns dir's complete chunk files in K order.
func ListChunks(dir string) ([]Chunk, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Chunk
	for _, e := range ents {
		if m := chunkRe.FindStringSubmatch(e.Name()); m != nil && e.Type().IsRegular() {
			k, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			out = append(out, Chunk{k, filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out, nil
}

// IsTemp reports whether name (a file name in an output directory) is the temporary of a
// chunk file or of the final file, which a crash may leave behind.
func IsTemp(name string) bool {
	return strings.HasSuffix(name, tmpSuffix) && (strings.HasPrefix(name, chunkPrefix) || name == FinalName+tmpSuffix)
}
