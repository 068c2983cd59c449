// size_fuzz_test.go: fuzz targets for the memory sizes clipd reads: the --memory flag's value
// and /proc/meminfo. `make fuzz` runs them.

package plan

import "testing"

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"4GiB", "500MB", "70%", "1.5 gib", " 2 T ", "0", "-1GiB", "1e400", "NaN%", "100.0000001%", "9223372036854775807", "0.0000001B"} {
		f.Add(s, int64(8<<30))
	}
	f.Fuzz(func(t *testing.T, s string, available int64) {
		n, err := ParseMemory(s, available)
		if err != nil {
			return
		}
		if n < 1 {
			t.Fatalf("ParseMemory(%q, %d) = %d", s, available, n)
		}
		if FormatBytes(n) == "" {
			t.Fatalf("FormatBytes(%d) is empty", n)
		}
	})
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("MemTotal:       24571236 kB\nMemFree:        19741232 kB\nMemAvailable:   22170492 kB\nBuffers:          170852 kB\nCached:          2331908 kB\n"))
	f.Add([]byte("MemFree: 100 kB\nBuffers: 5 kB\nCached: 7 kB\n"))
	f.Add([]byte("MemAvailable: x kB\n"))
	f.Add([]byte("MemAvailable: 9007199254740993 kB\n")) // overflows int64 once in bytes
	f.Add([]byte("MemFree: -5 kB\nBuffers: 1 kB\nCached: 1 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseMeminfo(b); err == nil && n < 0 {
			t.Fatalf("parseMeminfo gave %d bytes available", n)
		}
	})
}
