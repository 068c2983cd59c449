// main_test.go: the app as a user meets it: run() in-process for usage errors and help,
// and the built binary once for its exit codes, one-line errors and version.
package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/weights/weightstest"
)

func TestRunUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string // in stderr (or stdout for help)
	}{
		{[]string{"clipd", "--help"}, exitOK, "EXIT CODES:"},
		{[]string{"clipd", "weights", "fetch", "--help"}, exitOK, "refs/pr/66"},
		{[]string{"clipd"}, exitUsage, "clipd: no command given"},
		{[]string{"clipd", "frobnicate"}, exitUsage, `clipd: unknown command "frobnicate"`},
		{[]string{"clipd", "--frobnicate"}, exitUsage, "clipd: flag provided but not defined: -frobnicate"},
		{[]string{"clipd", "weights", "fetch", "--frobnicate"}, exitUsage, `run "clipd weights fetch --help"`},
		{[]string{"clipd", "weights", "fetch", "a/b", "c/d"}, exitUsage, "takes [NAME], got 2"},
		{[]string{"clipd", "weights", "inspect", "x", "--json"}, exitUsage, "flags go before them"},
		{[]string{"clipd", "weights", "nope"}, exitUsage, `unknown command "weights nope"`},
		{[]string{"clipd", "--log-level", "loud", "weights", "inspect"}, exitUsage, "--log-level"},
		{[]string{"clipd", "weights", "fetch", "--retries", "-1"}, exitUsage, "--retries"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, out.String(), errb.String())
		}
		if c.code != exitOK {
			lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "clipd: ") {
				t.Errorf("%v: stderr does not end with one \"clipd: \" line: %q", c.args, errb.String())
			}
		}
	}
}

func TestCommandsRegistered(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	if len(app.Commands) != len(commands) || app.Command("weights") == nil {
		t.Fatalf("commands %v", app.Commands)
	}
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			t.Errorf("command %s has no usage-error handler", c.Name)
		}
	}
}

// TestBinary builds clipd and runs it: exit codes, one-line errors, version, a fetch from a
// loopback hub and an inspect of what it fetched.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "clipd")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=9.9.9-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hub, model := tinyHub(t)
	home := t.TempDir()
	cache := filepath.Join(home, "cache")
	notDir := filepath.Join(home, "file")
	os.WriteFile(notDir, nil, 0o644)
	corrupt := filepath.Join(home, "corrupt.safetensors")
	os.WriteFile(corrupt, []byte("not a safetensors file"), 0o644)
	env := append(os.Environ(), "HOME="+home, "CLIPD_CACHE="+cache, "XDG_CACHE_HOME=", "HF_TOKEN=", "CLIPD_HF_ENDPOINT="+hub.URL, "HF_ENDPOINT=")

	for _, c := range []struct {
		args   []string
		code   int
		stdout string // substring of stdout
		stderr string // substring of the last stderr line
	}{
		{[]string{"--version"}, exitOK, "9.9.9-test", ""},
		{[]string{"--bogus"}, exitUsage, "", "clipd: flag provided but not defined: -bogus"},
		{[]string{"weights", "inspect", filepath.Join(home, "none.safetensors")}, exitInput, "", "does not exist"},
		{[]string{"weights", "inspect", corrupt}, exitBadWeights, "", "is not a valid safetensors file"},
		{[]string{"weights", "fetch", "acme/missing"}, exitInput, "", "access denied"},
		{[]string{"weights", "fetch", "--revision", "main", "acme/tiny"}, exitInput, "", "not found (HTTP 404"},
		{[]string{"weights", "fetch", "--cache-dir", notDir, "--revision", "v1", "acme/tiny"}, exitOutput, "", "cannot create the cache directory"},
		{[]string{"weights", "fetch", "--revision", "v1", "--sha256", strings.Repeat("1", 64), "acme/tiny"}, exitBadWeights, "", "--sha256"},
		{[]string{"-q", "weights", "fetch", "--revision", "v1", "acme/tiny"}, exitOK, filepath.Join(cache, "weights", "acme", "tiny"), ""},
		{[]string{"weights", "inspect", "--json", "acme/tiny"}, exitOK, `"sha256": "` + weightstest.SHA256(model) + `"`, ""},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, c.args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		cancel()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		if code != c.code || !strings.Contains(out.String(), c.stdout) || !strings.Contains(last, c.stderr) {
			t.Errorf("clipd %v: exit %d, want %d\nstdout: %s\nstderr: %s", c.args, code, c.code, out.String(), errb.String())
		}
		if c.code != exitOK && (!strings.HasPrefix(last, "clipd: ") || strings.Contains(errb.String(), "goroutine ")) {
			t.Errorf("clipd %v: stderr is not one clipd: line: %q", c.args, errb.String())
		}
		if c.args[0] == "-q" && errb.Len() != 0 {
			t.Errorf("clipd %v: --quiet printed %q", c.args, errb.String())
		}
	}
}

// TestQuietAnywhere: --quiet silences informational logs whether it comes before the
// command (global) or after it (the command's own flag), and is off otherwise.
func TestQuietAnywhere(t *testing.T) {
	golden := filepath.Join("..", "..", "testdata", "golden", "tiny_openai_quick_f32")
	for _, c := range []struct {
		args  []string
		quiet bool
	}{
		{[]string{"clipd", "--quiet", "bench", "--weights", golden, "--backend", "cpu", "--threads", "1", "-b", "1", "--duration", "0.05"}, true},
		{[]string{"clipd", "bench", "--quiet", "--weights", golden, "--backend", "cpu", "--threads", "1", "-b", "1", "--duration", "0.05"}, true},
		{[]string{"clipd", "bench", "--weights", golden, "--backend", "cpu", "--threads", "1", "-b", "1", "--duration", "0.05"}, false},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		logged := strings.Contains(errb.String(), "level=INFO")
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", c.args, code, errb.String())
		}
		if logged == c.quiet {
			t.Errorf("%v: quiet=%v but stderr has INFO logs=%v:\n%s", c.args, c.quiet, logged, errb.String())
		}
	}
}
