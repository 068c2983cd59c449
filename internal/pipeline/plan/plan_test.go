// plan_test.go: Make's sizing (monotone in the budget, modelled peak within it, clear errors),
// Available's meminfo and cgroup v1/v2 reading on fake trees, and the --memory parser.
package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMakeFitsAndIsMonotone(t *testing.T) {
	cases := []struct {
		name string
		in   Inputs
	}{
		{"cpu 2 cores", Inputs{Backend: "cpu 2 threads fp32", Cores: 2}},
		{"cpu 64 cores", Inputs{Backend: "cpu", Cores: 64}},
		{"cuda 80GB", Inputs{Backend: "cuda", Cores: 16, DeviceMemory: 80 << 30}},
		{"cuda unknown device", Inputs{Backend: "cuda", Cores: 16}},
		{"cpu fixed batch", Inputs{Backend: "cpu", Cores: 4, BatchSize: 8}},
		{"cpu fixed chunk and conns", Inputs{Backend: "cpu", Cores: 4, ChunkSize: 2000, Connections: 32}},
		{"tiny model", Inputs{Backend: "cpu", Cores: 2, EmbedDim: 16, ImageSize: 32, WeightsParams: 50_000}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var prev *Plan
			for budget := int64(100 << 20); budget <= 64<<30; budget += budget / 8 {
				in := tc.in
				in.MemoryBudget, in.Available = budget, 128<<30
				p, err := Make(in)
				if err != nil {
					if prev != nil {
						t.Fatalf("budget %s fails after a smaller one worked: %v", FormatBytes(budget), err)
					}
					if !strings.Contains(err.Error(), "too small") || !strings.Contains(err.Error(), "--memory") {
						t.Fatalf("budget %s: unhelpful error %q", FormatBytes(budget), err)
					}
					continue
				}
				if p.Peak > p.MemoryBudget || p.MemoryBudget != budget {
					t.Fatalf("budget %s: modelled peak %s, budget %s", FormatBytes(budget), FormatBytes(p.Peak), FormatBytes(p.MemoryBudget))
				}
				if p.BatchSize < 1 || p.ChunkSize < 1 || p.Connections < 1 || p.FetchQueue < 1 || p.DecodeWorkers < 1 ||
					p.DecodeQueue < 1 || p.MaxBodyBytes < 1 || p.MaxPixels < 1 || p.DecodedBudget < 1 {
					t.Fatalf("budget %s: a size below 1: %+v", FormatBytes(budget), p)
				}
				if tc.in.BatchSize > 0 && p.BatchSize != tc.in.BatchSize || tc.in.ChunkSize > 0 && p.ChunkSize != tc.in.ChunkSize ||
					tc.in.Connections > 0 && p.Connections != tc.in.Connections {
					t.Fatalf("budget %s: a value given in Inputs was changed: %+v", FormatBytes(budget), p)
				}
				// The pools hold one worst-case item each, and the Go heap's limit leaves the
				// engine's C memory out of the budget.
				if p.BodyBudget <= p.MaxBodyBytes || p.DecodedBudget < p.MaxPixels*DecodeBytesPerPixel ||
					p.GoMemoryLimit <= p.BodyBudget+p.DecodedBudget || p.GoMemoryLimit > p.MemoryBudget {
					t.Fatalf("budget %s: pools %s (bodies up to %s), %s (images up to %d px), Go limit %s",
						FormatBytes(budget), FormatBytes(p.BodyBudget), FormatBytes(p.MaxBodyBytes),
						FormatBytes(p.DecodedBudget), p.MaxPixels, FormatBytes(p.GoMemoryLimit))
				}
				if p.MaxPixels > PillowMaxPixels {
					t.Fatalf("MaxPixels %d above Pillow's limit", p.MaxPixels)
				}
				if prev != nil {
					q := *prev
					if p.BatchSize < q.BatchSize || p.ChunkSize < q.ChunkSize || p.Connections < q.Connections ||
						p.FetchQueue < q.FetchQueue || p.DecodeWorkers < q.DecodeWorkers || p.DecodeQueue < q.DecodeQueue ||
						p.MaxBodyBytes < q.MaxBodyBytes || p.MaxPixels < q.MaxPixels || p.DecodedBudget < q.DecodedBudget {
						t.Fatalf("more memory gave a smaller plan:\n%s: %+v\n%s: %+v", FormatBytes(q.MemoryBudget), q, FormatBytes(budget), p)
					}
				}
				prev = &p
			}
			if prev == nil {
				t.Fatal("no budget up to 64 GiB worked")
			}
		})
	}
}

func TestMakeSizes(t *testing.T) {
	big, err := Make(Inputs{Backend: "cpu", Cores: 2, MemoryBudget: 8 << 30, Available: 16 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if big.BatchSize != idealBatchCPU || big.Connections != idealConnections || big.ChunkSize != idealChunk ||
		big.MaxPixels != PillowMaxPixels || big.MaxBodyBytes != DefaultMaxBody || big.DecodeWorkers != 2 {
		t.Errorf("an ample CPU budget should give the ideal plan, got %+v", big)
	}
	small, err := Make(Inputs{Backend: "cpu", Cores: 2, MemoryBudget: 700 << 20, Available: 16 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if small.MaxPixels >= PillowMaxPixels || small.Connections >= idealConnections || small.BatchSize >= idealBatchCPU {
		t.Errorf("700 MiB should shrink the plan, got %+v", small)
	}
	// One worst-case image must fit what is left after the engine.
	if 3*small.MaxPixels > small.MemoryBudget-small.EngineBytes {
		t.Errorf("MaxPixels %d cannot fit 700 MiB beside the engine", small.MaxPixels)
	}

	gpu, err := Make(Inputs{Backend: "cuda", Cores: 16, DeviceMemory: 80 << 30, MemoryBudget: 32 << 30, Available: 64 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if gpu.BatchSize != idealBatchCUDA || gpu.DecodeWorkers != 15 || gpu.Backend != "cuda" {
		t.Errorf("H100-class plan: %+v", gpu)
	}
	// 2 GiB of device memory: 2 GiB - 1 GiB reserve - 176 MB fp16 weights = ~848 MiB / 6 MiB.
	g2, err := Make(Inputs{Backend: "cuda", Cores: 16, DeviceMemory: 2 << 30, MemoryBudget: 32 << 30, Available: 64 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if g2.BatchSize != 136 {
		t.Errorf("2 GiB GPU: batch %d, want 136", g2.BatchSize)
	}
	if _, err := Make(Inputs{Backend: "cuda", DeviceMemory: 1 << 30, Available: 64 << 30}); err == nil || !strings.Contains(err.Error(), "--backend cpu") {
		t.Errorf("1 GiB GPU: want an error suggesting --backend cpu, got %v", err)
	}
}

func TestMakeDefaultBudget(t *testing.T) {
	p, err := Make(Inputs{Backend: "cpu", Cores: 2, Available: 6 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if p.MemoryBudget != 3<<30 || p.Available != 6<<30 || p.Source != "given" {
		t.Errorf("default budget: %+v, want half of 6 GiB", p)
	}
	p, err = Make(Inputs{Backend: "cpu", Cores: 2, Available: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if p.MemoryBudget != MaxDefaultBudget {
		t.Errorf("default budget on 1 TiB: %s, want the cap", FormatBytes(p.MemoryBudget))
	}
	if _, err := Make(Inputs{Backend: "cpu", Cores: 2, Available: 600 << 20}); err == nil {
		t.Error("half of 600 MiB cannot hold B/32 on the CPU; want an error")
	}
}

func TestTooSmallMessage(t *testing.T) {
	_, err := Make(Inputs{Backend: "cpu", MemoryBudget: 200 << 20, Available: 8 << 30})
	if err == nil {
		t.Fatal("200 MiB accepted")
	}
	msg := err.Error()
	for _, want := range []string{"200 MiB is too small", "engine alone needs ~", "use --memory 700MiB or more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	// The advised budget works.
	if _, err := Make(Inputs{Backend: "cpu", MemoryBudget: 700 << 20, Available: 8 << 30}); err != nil {
		t.Errorf("the advised 700 MiB fails: %v", err)
	}
	_, err = Make(Inputs{Backend: "cpu", BatchSize: 512, MemoryBudget: 1 << 30, Available: 8 << 30})
	if err == nil || !strings.Contains(err.Error(), "--batch-size 512") {
		t.Errorf("a batch that cannot fit should be named: %v", err)
	}
}

func TestPlanString(t *testing.T) {
	p, err := Make(Inputs{Backend: "cpu", Cores: 2, MemoryBudget: 2 << 30, Available: 8 << 30})
	if err != nil {
		t.Fatal(err)
	}
	s := p.String()
	for _, want := range []string{"budget 2 GiB of 8 GiB available (given)", "batch 32", "256 connections", "chunks of 10000 rows", "89.5 MP"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "\n"); n > 6 {
		t.Errorf("String() has %d lines, want a short text", n+1)
	}
	p.MemoryBudget = 16 << 30
	if !strings.Contains(p.String(), "MORE than") {
		t.Errorf("a budget above available should warn:\n%s", p.String())
	}
}

func TestParseMeminfo(t *testing.T) {
	got, err := parseMeminfo([]byte("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   23772968 kB\nBuffers: 5 kB\n"))
	if err != nil || got != 23772968<<10 {
		t.Errorf("MemAvailable: %d, %v", got, err)
	}
	// Old kernels: free + buffers + cached.
	got, err = parseMeminfo([]byte("MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 2 kB\nCached: 3 kB\n"))
	if err != nil || got != 15<<10 {
		t.Errorf("no MemAvailable: %d, %v", got, err)
	}
	if _, err := parseMeminfo([]byte("garbage\n")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := parseMeminfo([]byte("MemAvailable: lots kB\n")); err == nil {
		t.Error("non-number accepted")
	}
}

// fakeTree writes files (path -> content) under a new temporary root.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo8G = "MemTotal: 16000000 kB\nMemFree: 1000 kB\nMemAvailable: 8388608 kB\n"

func TestAvailableCgroupV2(t *testing.T) {
	root := fakeTree(t, map[string]string{
		"proc/meminfo":                        meminfo8G,
		"proc/self/cgroup":                    "0::/kubepods/pod1/ctr\n",
		"cg/cgroup.controllers":               "cpu memory\n",
		"cg/kubepods/memory.max":              "max\n",
		"cg/kubepods/memory.current":          "999999999\n",
		"cg/kubepods/pod1/memory.max":         "4294967296\n",
		"cg/kubepods/pod1/memory.current":     "1073741824\n",
		"cg/kubepods/pod1/memory.stat":        "anon 5\ninactive_file 536870912\nactive_file 7\n",
		"cg/kubepods/pod1/ctr/memory.max":     "max\n",
		"cg/kubepods/pod1/ctr/memory.current": "100\n",
	})
	got, src, err := availableFrom(paths{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cg")})
	// pod1: 4 GiB limit - (1 GiB used - 512 MiB reclaimable page cache) = 3.5 GiB < 8 GiB.
	if err != nil || got != 3584<<20 || !strings.HasPrefix(src, "cgroup v2 ") || !strings.HasSuffix(src, filepath.Join("kubepods", "pod1")) {
		t.Errorf("got %d (%s) from %q, %v; want 3.5 GiB from cgroup v2 .../kubepods/pod1", got, FormatBytes(got), src, err)
	}
}

func TestAvailableCgroupV2Container(t *testing.T) {
	// A container's cgroup namespace: /proc/self/cgroup says "/", the mount is its own cgroup.
	// Its limit is above MemAvailable, so meminfo wins.
	root := fakeTree(t, map[string]string{
		"proc/meminfo":          meminfo8G,
		"proc/self/cgroup":      "0::/\n",
		"cg/cgroup.controllers": "memory\n",
		"cg/memory.max":         "17179869184\n",
		"cg/memory.current":     "0\n",
	})
	got, src, err := availableFrom(paths{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cg")})
	if err != nil || got != 8<<30 || src != "meminfo" {
		t.Errorf("got %s from %q, %v; want 8 GiB from meminfo", FormatBytes(got), src, err)
	}
}

func TestAvailableCgroupV1(t *testing.T) {
	// The hybrid layout of this project's build machine: v1 memory controller, v2 unified
	// mount without memory files; the process's path is missing under the mount (the
	// container sees its own cgroup as the mount root), so the walk reaches the root.
	root := fakeTree(t, map[string]string{
		"proc/meminfo":                    meminfo8G,
		"proc/self/cgroup":                "12:pids:/\n4:memory:/docker/abc\n1:name=systemd:/\n0::/\n",
		"cg/unified/cgroup.controllers":   "\n",
		"cg/memory/memory.limit_in_bytes": "2147483648\n",
		"cg/memory/memory.usage_in_bytes": "1610612736\n",
		"cg/memory/memory.stat":           "cache 10\ntotal_inactive_file 536870912\n",
	})
	got, src, err := availableFrom(paths{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cg")})
	// 2 GiB - (1.5 GiB - 0.5 GiB) = 1 GiB.
	if err != nil || got != 1<<30 || src != "cgroup v1 "+filepath.Join(root, "cg", "memory") {
		t.Errorf("got %s from %q, %v; want 1 GiB from cgroup v1", FormatBytes(got), src, err)
	}

	// No limit (v1 writes ~2^63): meminfo.
	root = fakeTree(t, map[string]string{
		"proc/meminfo":                      meminfo8G,
		"proc/self/cgroup":                  "4:memory:/x\n",
		"cg/memory/x/memory.limit_in_bytes": "9223372036854771712\n",
		"cg/memory/x/memory.usage_in_bytes": "3234942976\n",
	})
	got, src, err = availableFrom(paths{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cg")})
	if err != nil || got != 8<<30 || src != "meminfo" {
		t.Errorf("unlimited v1: got %s from %q, %v; want meminfo's 8 GiB", FormatBytes(got), src, err)
	}

	// Usage above the limit (it happens briefly): no headroom, not a negative number.
	root = fakeTree(t, map[string]string{
		"proc/meminfo":                    meminfo8G,
		"proc/self/cgroup":                "4:memory,cpu:/\n",
		"cg/memory/memory.limit_in_bytes": "1000\n",
		"cg/memory/memory.usage_in_bytes": "2000\n",
	})
	got, _, err = availableFrom(paths{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cg")})
	if err != nil || got != 0 {
		t.Errorf("over the limit: got %d, %v; want 0", got, err)
	}
}

func TestAvailableWithoutProc(t *testing.T) {
	defer func(f func() int64) { sysinfoFree = f }(sysinfoFree)
	sysinfoFree = func() int64 { return 5 << 30 }
	root := t.TempDir()
	got, src, err := availableFrom(paths{Proc: filepath.Join(root, "noproc"), Cgroup: filepath.Join(root, "nocg")})
	if err != nil || got != 5<<30 || src != "sysinfo" {
		t.Errorf("got %s from %q, %v; want sysinfo's 5 GiB", FormatBytes(got), src, err)
	}
	sysinfoFree = func() int64 { return 0 }
	if _, _, err := availableFrom(paths{Proc: filepath.Join(root, "noproc"), Cgroup: filepath.Join(root, "nocg")}); err == nil || !strings.Contains(err.Error(), "--memory") {
		t.Errorf("nothing known: want an error advising --memory, got %v", err)
	}
}

func TestAvailableHost(t *testing.T) {
	got, src, err := Available()
	if err != nil || got <= 0 || src == "" {
		t.Fatalf("Available() = %d, %q, %v", got, src, err)
	}
	t.Logf("this machine: %s available (%s)", FormatBytes(got), src)
}

func TestParseMemory(t *testing.T) {
	const avail = 10 << 30
	good := []struct {
		in   string
		want int64
	}{
		{"4GiB", 4 << 30}, {"4gib", 4 << 30}, {"4Gi", 4 << 30}, {"500MB", 500e6}, {"500M", 500e6}, {"1.5GiB", 3 << 29},
		{" 600MiB ", 600 << 20}, {"123", 123}, {"100B", 100}, {"2 GB", 2e9}, {"70%", 7 << 30}, {"100%", avail}, {"2.5%", avail / 40},
	}
	for _, g := range good {
		got, err := ParseMemory(g.in, avail)
		if err != nil || got != g.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", g.in, got, err, g.want)
		}
	}
	for _, bad := range []string{"", "GiB", "4XB", "-1GiB", "0", "0%", "101%", "abc%", "1e30TB", "nan", "4 GiB extra"} {
		if got, err := ParseMemory(bad, avail); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", bad, got)
		}
	}
	if _, err := ParseMemory("50%", 0); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("a percentage with unknown available memory: %v", err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 300 << 10: "300 KiB", 3 << 29: "1.5 GiB", 4 << 30: "4 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// Device JPEG decoding costs device memory: the library's figure (or the estimate) is added
// to each engine's, so the batch shrinks to keep the modelled device memory within the GPU,
// and a GPU too small for it says to decode on the CPU. Several engines multiply the host
// side (weights, batches).
func TestMakeEngineDecodesAndEngines(t *testing.T) {
	const gpu = 3 << 30
	base := Inputs{Backend: "cuda", Cores: 16, DeviceMemory: gpu, MemoryBudget: 16 << 30, Available: 64 << 30}
	plain, err := Make(base)
	if err != nil {
		t.Fatal(err)
	}
	withLib := base
	withLib.EngineDecodes = true
	var asked []int
	withLib.DecodeDeviceBytes = func(b int) (int64, error) { asked = append(asked, b); return 512<<20 + int64(b)*(8<<20), nil }
	lib, err := Make(withLib)
	if err != nil {
		t.Fatal(err)
	}
	estimate := base
	estimate.EngineDecodes = true
	est, err := Make(estimate)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Plan{plain, lib, est} {
		if p.DeviceBytes <= 0 || p.DeviceBytes > gpu {
			t.Fatalf("modelled device memory %s on a %s GPU: %+v", FormatBytes(p.DeviceBytes), FormatBytes(gpu), p)
		}
	}
	if len(asked) == 0 || lib.BatchSize >= plain.BatchSize || est.BatchSize >= plain.BatchSize {
		t.Fatalf("batches: plain %d, library-sized decode %d (asked %v), estimated decode %d: decoding on the device should cost batch room",
			plain.BatchSize, lib.BatchSize, asked, est.BatchSize)
	}
	if want := int64(cudaReserve) + b32Params*2 + int64(lib.BatchSize)*(cudaPerImage+8<<20) + 512<<20; lib.DeviceBytes != want {
		t.Fatalf("device bytes %d, want %d", lib.DeviceBytes, want)
	}
	if !lib.EngineDecodes || !strings.Contains(lib.String(), "JPEGs decoded by the engine (nvJPEG)") {
		t.Fatalf("plan text does not say the engine decodes:\n%s", lib.String())
	}
	tiny := withLib
	tiny.DeviceMemory = 1<<30 + 200<<20
	if _, err := Make(tiny); err == nil || !strings.Contains(err.Error(), "--decode cpu") || !strings.Contains(err.Error(), "decoding JPEGs on the device") {
		t.Fatalf("too small a GPU for device decoding: %v", err)
	}

	one, err := Make(Inputs{Backend: "cpu", Cores: 4, MemoryBudget: 8 << 30, Available: 16 << 30})
	if err != nil {
		t.Fatal(err)
	}
	two, err := Make(Inputs{Backend: "cpu", Cores: 4, MemoryBudget: 8 << 30, Available: 16 << 30, Engines: 2})
	if err != nil {
		t.Fatal(err)
	}
	if two.Engines != 2 || two.EngineBytes <= one.EngineBytes || two.Peak <= one.Peak || two.DecodedBudget <= one.DecodedBudget {
		t.Fatalf("two engines: %+v\none engine: %+v", two, one)
	}
}
