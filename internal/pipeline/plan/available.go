// available.go: how much memory this process may still use: the smallest of MemAvailable
// (/proc/meminfo) and the headroom of every cgroup (v2 or v1) it runs in, with the sysinfo
// numbers of pbnjay/memory when /proc cannot be read.

package plan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pbnjay/memory"
)

// unlimited is the threshold above which a cgroup limit means "no limit" (cgroup v1 writes
// PAGE_COUNTER_MAX pages, about 2^63, when none is set).
const unlimited = int64(1) << 60

// Available returns the memory this process may still use and where that number came from:
// "meminfo" (MemAvailable of /proc/meminfo), "cgroup v2 <dir>", "cgroup v1 <dir>" (the
// cgroup's limit minus its usage, page cache that can be dropped not counted), or
// "sysinfo" (pbnjay/memory's free memory, when /proc is not there; it counts no page cache,
// so it is low).
func Available() (avail int64, source string, err error) {
	return availableFrom(hostPaths)
}

// paths locates the files Available reads; tests point them at a fake tree.
type paths struct {
	Proc   string // normally /proc
	Cgroup string // normally /sys/fs/cgroup
}

var hostPaths = paths{Proc: "/proc", Cgroup: "/sys/fs/cgroup"}

// sysinfoFree is pbnjay/memory's fallback; a variable so tests can replace it.
var sysinfoFree = func() int64 { return int64(memory.FreeMemory()) }

func availableFrom(p paths) (int64, string, error) {
	avail, source := int64(-1), ""
	memAvail, err := readMemAvailable(filepath.Join(p.Proc, "meminfo"))
	switch {
	case err == nil:
		avail, source = memAvail, "meminfo"
	case errors.Is(err, os.ErrNotExist):
		if free := sysinfoFree(); free > 0 {
			avail, source = free, "sysinfo"
		}
	default:
		return 0, "", err
	}
	if cg, err := os.ReadFile(filepath.Join(p.Proc, "self", "cgroup")); err == nil {
		if head, dir, ok := cgroupHeadroom(p.Cgroup, string(cg)); ok && (avail < 0 || head < avail) {
			avail, source = head, dir
		}
	}
	if avail < 0 {
		return 0, "", fmt.Errorf("cannot tell how much memory is available: no %s and no system information; give --memory", filepath.Join(p.Proc, "meminfo"))
	}
	return avail, source, nil
}

// readMemAvailable reads MemAvailable (kB) from a meminfo file, in bytes.
func readMemAvailable(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return parseMeminfo(b)
}

func parseMeminfo(b []byte) (int64, error) {
	var free, buffers, cached int64 = -1, -1, -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || n > 1<<40 { // over 1 PiB in kB: not a real machine, and would overflow
			return 0, fmt.Errorf("meminfo: %s: %q is not a size in kB", key, f[0])
		}
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		switch key {
		case "MemAvailable":
			return n, nil
		case "MemFree":
			free = n
		case "Buffers":
			buffers = n
		case "Cached":
			cached = n
		}
	}
	// Kernels before 3.14 have no MemAvailable: free + buffers + page cache is its old estimate.
	if free >= 0 && buffers >= 0 && cached >= 0 {
		return free + buffers + cached, nil
	}
	return 0, errors.New("meminfo: no MemAvailable or MemFree line")
}

// cgroupHeadroom walks the process's cgroups (as /proc/self/cgroup names them) from its own
// up to the root of the hierarchy under root, and returns the smallest limit - usage of any
// that has a limit, with the source naming the cgroup directory.
func cgroupHeadroom(root, procCgroup string) (int64, string, bool) {
	best, src, found := int64(0), "", false
	consider := func(head int64, s string) {
		if !found || head < best {
			best, src, found = head, s, true
		}
	}
	for _, line := range strings.Split(procCgroup, "\n") {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			// cgroup v2: a pure v2 mount at root, or the hybrid layout's root/unified.
			for _, mount := range []string{root, filepath.Join(root, "unified")} {
				if _, err := os.Stat(filepath.Join(mount, "cgroup.controllers")); err != nil {
					continue
				}
				if h, d, ok := walkUp(mount, parts[2], v2Headroom); ok {
					consider(h, "cgroup v2 "+d)
				}
				break
			}
		case hasController(parts[1], "memory"):
			if h, d, ok := walkUp(filepath.Join(root, "memory"), parts[2], v1Headroom); ok {
				consider(h, "cgroup v1 "+d)
			}
		}
	}
	return best, src, found
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// walkUp applies headroom to the cgroup directory mount/rel and each parent up to mount,
// returning the smallest result. In a container the mount is often the container's own
// cgroup while /proc/self/cgroup still names the host's path; then mount/rel does not
// exist and the walk starts at the deepest existing directory on the way.
func walkUp(mount, rel string, headroom func(dir string) (int64, bool)) (int64, string, bool) {
	rel = path.Clean("/" + rel)
	best, bestDir, found := int64(0), "", false
	for {
		dir := filepath.Join(mount, filepath.FromSlash(rel))
		if h, ok := headroom(dir); ok && (!found || h < best) {
			best, bestDir, found = h, dir, true
		}
		if rel == "/" {
			break
		}
		rel = path.Dir(rel)
	}
	return best, bestDir, found
}

// v2Headroom is memory.max - (memory.current - inactive_file) of a cgroup v2 directory.
func v2Headroom(dir string) (int64, bool) {
	limit, err := readLimit(filepath.Join(dir, "memory.max"))
	if err != nil || limit >= unlimited {
		return 0, false
	}
	usage, err := readLimit(filepath.Join(dir, "memory.current"))
	if err != nil {
		return 0, false
	}
	usage -= statValue(filepath.Join(dir, "memory.stat"), "inactive_file")
	return max(limit-max(usage, 0), 0), true
}

// v1Headroom is memory.limit_in_bytes - (memory.usage_in_bytes - total_inactive_file) of a
// cgroup v1 memory directory.
func v1Headroom(dir string) (int64, bool) {
	limit, err := readLimit(filepath.Join(dir, "memory.limit_in_bytes"))
	if err != nil || limit >= unlimited {
		return 0, false
	}
	usage, err := readLimit(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, false
	}
	usage -= statValue(filepath.Join(dir, "memory.stat"), "total_inactive_file")
	return max(limit-max(usage, 0), 0), true
}

// readLimit reads a one-number cgroup file; "max" is unlimited.
func readLimit(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return unlimited, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// An unsigned value past int64 is no limit either.
		if _, uerr := strconv.ParseUint(s, 10, 64); uerr == nil {
			return unlimited, nil
		}
		return 0, fmt.Errorf("%s: %q is not a number", file, s)
	}
	return n, nil
}

// statValue is the value of key in a memory.stat file, 0 when absent.
func statValue(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
