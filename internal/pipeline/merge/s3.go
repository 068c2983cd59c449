// s3.go: FindObjects, what Find does for an s3:// argument: the finished shard files under
// an output prefix (P/shard-XXXXX-of-NNNNN/Images_Embedded.h5, the bucket layout clipd embed
// writes), found by listing, or the object itself.
package merge

import (
	"cmp"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// The names of an output prefix, as in an output folder (outfile's names).
var (
	s3ShardDirRe = regexp.MustCompile(`^shard-([0-9]+)-of-([0-9]+)$`)
	s3ChunkRe    = regexp.MustCompile(`^Images_Embedded_([0-9]+)\.h5$`)
)

// FoundObjects is what FindObjects found for one s3:// argument.
type FoundObjects struct {
	Objects []objstore.Info // to merge: a prefix's finished shard files by index, or its final file, or the object named
	// Unfinished are shard folders without a final file (Path is the folder's s3:// URL,
	// Chunks its chunk objects).
	Unfinished []outfile.ShardDir
	// WholeRun: the prefix has no shard folders, only its own final file (Objects[0]).
	WholeRun bool
}

// FindObjects expands an s3:// argument: a key ending in ".h5" is that object; any other is
// an output prefix (a trailing "/" or not): its shard files
// (PREFIX/shard-*-of-*/Images_Embedded.h5, by shard count then index), or, when it has none,
// PREFIX/Images_Embedded.h5. Errors are objstore's (the bucket, the credentials, the
// endpoint; ErrNotFound for a missing object) or outfile.ErrInput (a prefix without a
// finished output).
func FindObjects(ctx context.Context, c *objstore.Client, loc objstore.Location) (FoundObjects, error) {
	var found FoundObjects
	if strings.HasSuffix(loc.Key, ".h5") {
		info, err := c.Head(ctx, loc)
		if err != nil {
			return found, err
		}
		found.Objects = []objstore.Info{info}
		return found, nil
	}
	prefix := loc.Dir()
	objs, err := c.List(ctx, prefix)
	if err != nil {
		return found, err
	}
	var final *objstore.Info
	chunks := 0
	shards := map[[2]int]*outfile.ShardDir{}
	finals := map[[2]int]objstore.Info{}
	var order [][2]int
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix.Key)
		dir, name, nested := strings.Cut(rel, "/")
		switch {
		case !nested && rel == outfile.FinalName:
			o := o
			final = &o
		case !nested && s3ChunkRe.MatchString(rel):
			chunks++
		case nested && !strings.Contains(name, "/") && s3ShardDirRe.MatchString(dir):
			m := s3ShardDirRe.FindStringSubmatch(dir)
			i, err1 := strconv.Atoi(m[1])
			n, err2 := strconv.Atoi(m[2])
			if err1 != nil || err2 != nil {
				continue
			}
			k := [2]int{n, i}
			s := shards[k]
			if s == nil {
				s = &outfile.ShardDir{Index: i, Count: n, Path: prefix.Join(dir).String()}
				shards[k] = s
				order = append(order, k)
			}
			switch {
			case name == outfile.FinalName:
				s.Final = o.Location.String()
				finals[k] = o
			case s3ChunkRe.MatchString(name):
				s.Chunks++
			}
		}
	}
	// By count, then index (ScanDir's order); the listing's key order already is, since the
	// indices are zero-padded, but a hand-made folder may not be.
	sortShardKeys(order)
	for _, k := range order {
		if o, ok := finals[k]; ok {
			found.Objects = append(found.Objects, o)
		} else {
			found.Unfinished = append(found.Unfinished, *shards[k])
		}
	}
	where := prefix.String()
	switch {
	case len(found.Objects) > 0:
	case final != nil:
		found.Objects, found.WholeRun = []objstore.Info{*final}, true
	case len(order) > 0:
		s := found.Unfinished[0]
		return found, outfile.InputErrorf("%s: none of its %d shard folders is finished (%s holds %d chunk files): rerun their clipd embed tasks to finish them",
			where, len(order), s.Path[strings.LastIndex(s.Path, "/")+1:], s.Chunks)
	case chunks > 0:
		return found, outfile.UnfinishedRun(where, chunks)
	default:
		return found, outfile.InputErrorf("%s: no clipd output under this prefix (no %s, no shard-*-of-*/%s); give clipd embed's s3:// output or its files",
			where, outfile.FinalName, outfile.FinalName)
	}
	return found, nil
}

func sortShardKeys(ks [][2]int) {
	slices.SortFunc(ks, func(a, b [2]int) int {
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return cmp.Compare(a[1], b[1])
	})
}
