// flags_fuzz_test.go: fuzz targets for the command-line parsing clipd does itself: duration
// flag values and the reordering of flags given anywhere on the line. `make fuzz` runs them.

package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func FuzzDurationFlag(f *testing.F) {
	for _, s := range []string{"30s", "30", "2.5", "1m30s", "250ms", "0", "-1", "1e300", "NaN", "+Inf", "9223372036.854775807", "0.0000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v durationValue
		if err := v.Set(s); err != nil {
			if v.d != 0 {
				t.Fatalf("Set(%q) refused it (%v) but kept %v", s, err, v.d)
			}
			return
		}
		if v.d <= 0 {
			t.Fatalf("Set(%q) accepted %v", s, v.d)
		}
	})
}

// FuzzNormalizeArgs reorders command lines (arguments separated by NUL bytes) and checks that
// nothing is invented: every argument out was given, besides the --help that `help` becomes.
func FuzzNormalizeArgs(f *testing.F) {
	for _, line := range []string{
		"embed\x00list.txt\x00--output\x00out\x00--quiet",
		"--log-level\x00debug\x00merge\x00a.h5\x00-o\x00all.h5",
		"help\x00embed", "weights\x00fetch\x00--force\x00ViT-B-32", "embed\x00--\x00-odd-name.txt\x00--limit",
		"inspect\x00--rows", "embed\x00--timeout=30s\x00-\x00--connections\x00-1",
	} {
		f.Add(line)
	}
	app := newApp(io.Discard, io.Discard)
	f.Fuzz(func(t *testing.T, line string) {
		args := append([]string{"clipd"}, strings.Split(line, "\x00")...)
		out := normalizeArgs(app, slices.Clone(args))
		if len(out) == 0 || out[0] != "clipd" || len(out) > len(args)+1 {
			t.Fatalf("%q became %q", args, out)
		}
		for _, a := range out[1:] {
			if a != "--help" && !slices.Contains(args[1:], a) {
				t.Fatalf("%q became %q: %q was not given", args, out, a)
			}
		}
	})
}
