// size.go: reading and writing memory sizes: the --memory flag's "4GiB", "500MB", "70%"
// (of available memory), and the short "1.2 GiB" form Plan.String prints.

package plan

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
	"ti": 1 << 40, "tib": 1 << 40,
}

// ParseMemory reads a --memory value: bytes with an optional unit (B, kB/MB/GB/TB in powers
// of 1000, KiB/MiB/GiB/TiB in powers of 1024, K/M/G/T as 1000s; any case; a fraction is
// fine: "1.5GiB"), or a percentage of available ("70%"). The result is at least 1 byte.
func ParseMemory(s string, available int64) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("memory size is empty: want e.g. 4GiB, 500MB or 70%%")
	}
	if pct, ok := strings.CutSuffix(t, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || p <= 0 || p > 100 || math.IsNaN(p) {
			return 0, fmt.Errorf("memory size %q: a percentage must be a number in (0, 100]", s)
		}
		if available <= 0 {
			return 0, fmt.Errorf("memory size %q: available memory is unknown, give a size such as 4GiB", s)
		}
		return max(int64(float64(available)*p/100), 1), nil
	}
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("memory size %q: unknown unit %q (want B, kB, MB, GB, KiB, MiB, GiB or a %%)", s, t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("memory size %q: want a positive number with a unit, e.g. 4GiB or 500MB", s)
	}
	b := v * mult
	if b >= math.MaxInt64/2 {
		return 0, fmt.Errorf("memory size %q is too large", s)
	}
	return max(int64(b), 1), nil
}

// FormatBytes writes n in binary units with up to one decimal: "512 B", "300 KiB", "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, exp := float64(n), -1
	for f >= unit && exp < 4 {
		f /= unit
		exp++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTP"[exp]) + "iB"
}
