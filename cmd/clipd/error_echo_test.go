// error_echo_test.go: an error line echoes at most a few hundred bytes of the input it
// quotes (issue "hardening", item 8): a 50 MiB tensor name used to be printed whole by
// `clipd weights inspect`, and cut with the rest of the message lost by the C engine; a
// CSV header's column names and a shard list's lines are cut the same way. Real files, the
// CLI, one line on stderr, its length.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// maxEchoLine is what a test accepts as one error line: the message, its paths, and a few
// hundred bytes of the input it quotes.
const maxEchoLine = 1200

// safetensorsWith writes a safetensors file with the given header (its tensors' data all
// zero, dataBytes of it) and returns its path.
func safetensorsWith(t *testing.T, header map[string]any, dataBytes int) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8, 8+len(h)+dataBytes)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	b = append(append(b, h...), make([]byte, dataBytes)...)
	p := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shortOneLine checks that stderr is one line of at most maxEchoLine bytes holding each of want.
func shortOneLine(t *testing.T, what, stderr string, want ...string) {
	t.Helper()
	line := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(line, "\n") || len(line) > maxEchoLine {
		t.Errorf("%s: stderr is %d bytes in %d lines, want one line of at most %d: %.300q...", what, len(stderr), strings.Count(stderr, "\n"), maxEchoLine, stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: %q does not say %q", what, line, w)
		}
	}
}

func TestLongTensorNameNotEchoedWhole(t *testing.T) {
	name := "visual." + strings.Repeat("x", 50<<20)
	entry := func(begin, end int) map[string]any {
		return map[string]any{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{begin, end}}
	}
	// Its data_offsets hold 8 bytes for a 4-byte tensor, past the 4 bytes of data.
	wrongSize := safetensorsWith(t, map[string]any{name: entry(0, 8)}, 4)
	// It overlaps another tensor.
	overlap := safetensorsWith(t, map[string]any{name: entry(0, 4), "visual.conv1.weight": entry(0, 4)}, 4)
	list := writeList(t, []string{"http://127.0.0.1:9/a.jpg"})
	for _, c := range []struct {
		what string
		args []string
		want []string
	}{
		{"weights inspect (Go's reader), wrong size", []string{"weights", "inspect", wrongSize}, []string{"visual.xxx", "... (52428807 bytes)", "data_offsets [0, 8] hold 8"}},
		{"weights inspect (Go's reader), overlap", []string{"weights", "inspect", overlap}, []string{"visual.xxx", "... (52428807 bytes)", "overlaps the previous tensor"}},
		{"embed (the C engine's reader), wrong size", []string{"--quiet", "embed", "-i", list, "-o", t.TempDir(), "-w", wrongSize, "--backend", "cpu"}, []string{"visual.xxx", "...", "are past the end of the file"}},
		{"embed (the C engine's reader), overlap", []string{"--quiet", "embed", "-i", list, "-o", t.TempDir(), "-w", overlap, "--backend", "cpu"}, []string{"visual.xxx", "...", "overlap (data_offsets [0, 4] and [0, 4])"}},
	} {
		code, _, se := clipdRun(t, c.args...)
		if code != exitBadWeights {
			t.Errorf("%s: exit %d, want %d", c.what, code, exitBadWeights)
		}
		shortOneLine(t, c.what, se, c.want...)
	}
}

func TestLongListInputNotEchoedWhole(t *testing.T) {
	dir := t.TempDir()
	// A CSV whose header has no URL column, only very long names.
	csv := filepath.Join(dir, "list.csv")
	header := strings.Repeat("a", 200<<10) + "," + strings.Repeat("b", 20<<10) + ",c\n"
	if err := os.WriteFile(csv, []byte(header+"1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, se := clipdRun(t, embedFlags(csv, filepath.Join(dir, "out1"))...)
	if code != exitInput {
		t.Errorf("csv: exit %d, want %d", code, exitInput)
	}
	shortOneLine(t, "csv header", se, "no URL column", `"aaaa`, "(204800 bytes)", "(3 in all)", "name the URL column")

	// A list of shards whose second line names a missing shard 8 KiB long.
	shard := filepath.Join(dir, "00000.tar")
	if err := os.WriteFile(shard, make([]byte, 1024), 0o644); err != nil { // an empty tar
		t.Fatal(err)
	}
	missing := filepath.Join(dir, strings.Repeat("d", 8<<10)+".tar")
	shards := filepath.Join(dir, "shards.txt")
	if err := os.WriteFile(shards, []byte(shard+"\n"+missing+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, se = clipdRun(t, embedFlags(shards, filepath.Join(dir, "out2"))...)
	if code != exitInput {
		t.Errorf("shard list: exit %d, want %d", code, exitInput)
	}
	shortOneLine(t, "shard list", se, "line 2: shard", "ddd", "bytes) cannot be read (file name too long)")
}

// The net under the messages: a line errorLine prints is at most maxErrorLine bytes (plus the
// " ... " between its head and tail), and its end, which says what to do, is kept.
func TestErrorLineCapped(t *testing.T) {
	msg := "reading x: " + strings.Repeat("é", 10000) + "\nmore; rerun the same command to resume"
	got := errorLine(errors.New(msg))
	if len(got) > maxErrorLine+5 || !strings.HasPrefix(got, "reading x: ") || !strings.HasSuffix(got, "rerun the same command to resume") ||
		strings.Contains(got, "\n") || !utf8.ValidString(got) {
		t.Errorf("errorLine: %d bytes, %.80q ... %q", len(got), got, got[max(0, len(got)-60):])
	}
	if short := "weights: bad"; errorLine(errors.New(short)) != short {
		t.Errorf("a short line changed: %q", errorLine(errors.New(short)))
	}
}
