// names.go: the names of the files in an output directory: the final file, its chunk files
// while a run writes them, their temporaries, the shard folders of a sharded run, and
// ScanDir, which says what a folder holds.
package outfile

import (
	"fmt"
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

var (
	chunkRe    = regexp.MustCompile(`^Images_Embedded_([0-9]+)\.h5$`)
	shardDirRe = regexp.MustCompile(`^shard-([0-9]+)-of-([0-9]+)$`)
)

// ShardDirName is the folder of shard i of n inside an output folder: shard-00003-of-00016.
func ShardDirName(i, n int) string {
	return fmt.Sprintf("shard-%05d-of-%05d", i, n)
}

// ShardDir is a shard folder found by ScanDir.
type ShardDir struct {
	Index, Count int
	Path         string // the folder
	Final        string // its final file; "" while the shard is unfinished
	Chunks       int    // its chunk files (an unfinished shard's progress)
}

// DirContents is what ScanDir finds in an output folder.
type DirContents struct {
	Final  string     // dir's final file; "" when there is none
	Chunks int        // dir's own chunk files (an unfinished run)
	Shards []ShardDir // shard folders, by Count then Index
}

// ScanDir says what the output folder dir holds: its final file, its chunk files and its
// shard folders (with theirs). Errors are ErrInput ("DIR: no such file or directory").
func ScanDir(dir string) (DirContents, error) {
	var c DirContents
	ents, err := os.ReadDir(dir)
	if err != nil {
		cause := systemCause(err)
		return c, &fileError{class: ErrInput, msg: dir + ": " + cause.Error(), cause: cause}
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == FinalName && e.Type().IsRegular():
			c.Final = filepath.Join(dir, name)
		case chunkRe.MatchString(name) && e.Type().IsRegular():
			c.Chunks++
		case e.IsDir() && shardDirRe.MatchString(name):
			m := shardDirRe.FindStringSubmatch(name)
			i, err1 := strconv.Atoi(m[1])
			n, err2 := strconv.Atoi(m[2])
			if err1 != nil || err2 != nil {
				continue
			}
			s := ShardDir{Index: i, Count: n, Path: filepath.Join(dir, name)}
			if st, err := os.Stat(filepath.Join(s.Path, FinalName)); err == nil && st.Mode().IsRegular() {
				s.Final = filepath.Join(s.Path, FinalName)
			}
			if cs, err := ListChunks(s.Path); err == nil {
				s.Chunks = len(cs)
			}
			c.Shards = append(c.Shards, s)
		}
	}
	sort.Slice(c.Shards, func(i, j int) bool {
		a, b := c.Shards[i], c.Shards[j]
		return a.Count < b.Count || a.Count == b.Count && a.Index < b.Index
	})
	return c, nil
}

// ChunkPath is the path of chunk k in dir.
func ChunkPath(dir string, k int) string {
	return filepath.Join(dir, chunkPrefix+strconv.Itoa(k)+".h5")
}

// IsChunkName reports whether name is a chunk file's name (Images_Embedded_<k>.h5).
func IsChunkName(name string) bool { return chunkRe.MatchString(name) }

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
