// decode_test.go: `clipd embed --decode` and `--devices` on the command line: what a CPU-only
// machine (or build) cannot do ends with exit 2 and one line saying why and what to do.
package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/cgo/engine"
)

func TestDecodeGPUAndDevicesOnCPUOnly(t *testing.T) {
	if b, _, _, err := engine.ResolveBackend(engine.BackendAuto, 0); err == nil && b == engine.BackendCUDA {
		t.Skip("a CUDA device is here: --decode gpu and --devices 0 are valid")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.jpg"), readFile(t, filepath.Join(e2eDir, "img_00.jpg")), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--decode", "gpu"}, "clipd: --decode gpu needs the CUDA backend, which this run does not use ("},
		{[]string{"--decode", "gpu", "--backend", "cpu"}, "clipd: --decode gpu needs the CUDA backend, which this run does not use (--backend cpu was asked for): use --decode cpu (or auto)"},
		{[]string{"--decode", "nvjpeg"}, "clipd: --decode: unknown decode \"nvjpeg\" (want auto, cpu or gpu)"},
		{[]string{"--devices", "0,1"}, "clipd: --devices 0,1: the cpu backend runs on the CPU, not on devices"},
		{[]string{"--devices", "0,1,1"}, "clipd: --devices 0,1,1: device 1 is listed twice"},
		{[]string{"--backend", "cuda", "--devices", "3,1"}, "clipd: --devices 3,1: device 3: "},
		{[]string{"--devices", "-2"}, "clipd: --devices -2: device -2 is negative; CUDA devices are numbered from 0"},
		{[]string{"--devices", "0,gpu1"}, "clipd: --devices: \"gpu1\" is not a device number (want a list such as 0,1,2,3)"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		args := append([]string{"clipd", "embed", "--input", dir, "--weights", tinyWeights, "--output", out}, c.args...)
		var so, se bytes.Buffer
		code := run(testCtx(t), args, &so, &se)
		lines := strings.Split(strings.TrimSuffix(se.String(), "\n"), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], c.want) {
			t.Errorf("clipd embed %s: exit %d, stderr %q; want exit %d and one line starting %q", strings.Join(c.args, " "), code, se.String(), exitUsage, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("clipd embed %s: the output folder was created", strings.Join(c.args, " "))
		}
	}
}
