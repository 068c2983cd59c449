// main_test.go: the app as a user meets it: run() in-process for usage errors and help,
// and the built binary once for its exit codes, one-line errors and version.
package main

import (
	"bytes"
	"context"
	"encoding/json"
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
		{[]string{"clipd", "weights", "inspect", "x", "--frobnicate"}, exitUsage, `flag provided but not defined: -frobnicate; run "clipd weights inspect --help"`},
		{[]string{"clipd", "weights", "fetch", "a/b", "--retries", "-1"}, exitUsage, "--retries"},
		{[]string{"clipd", "inspect", "x.h5", "--rows"}, exitUsage, "flag needs an argument: -rows"},
		{[]string{"clipd", "inspect", "x.h5", "--log-level"}, exitUsage, "flag needs an argument: -log-level"},
		{[]string{"clipd", "bench", "x"}, exitUsage, `clipd bench takes no arguments, got "x"`},
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
		{[]string{"weights", "inspect", "acme/tiny", "--json", "--log-level", "warn"}, exitOK, `"sha256": "` + weightstest.SHA256(model) + `"`, ""},
		{[]string{"version"}, exitOK, "clipd version 9.9.9-test", ""},
		{[]string{"help", "weights", "fetch"}, exitOK, "clipd weights fetch", ""},
		{[]string{"help"}, exitOK, "EXIT CODES:", ""},
		{[]string{"help", "nope"}, exitUsage, "", `clipd: unknown command "nope"`},
		{[]string{"weights", "fetch", "acme/tiny", "--retries", "-1"}, exitUsage, "", "--retries -1"},
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

// runCLI runs clipd in-process through run and returns its exit code, stdout and stderr.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"clipd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// oneErrorLine fails unless stderr is exactly one "clipd: " line.
func oneErrorLine(t *testing.T, args []string, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "clipd: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("%v: stderr is not one \"clipd: \" line: %q", args, stderr)
	}
}

// TestFlagsAfterArgs: flags may follow the positional arguments, in every command; -- ends
// the flags, and a flag's value may start with a dash.
func TestFlagsAfterArgs(t *testing.T) {
	tmp := t.TempDir()
	a := writeOutput(t, filepath.Join(tmp, "a"), []int64{1, 3, 4, 5})
	b := writeOutput(t, filepath.Join(tmp, "b"), []int64{2, 3, 8})
	out := filepath.Join(tmp, "all.h5")

	code, stdout, stderr := runCLI("merge", a, b, "-o", out)
	if code != exitOK || !strings.Contains(stdout, out+": 4 rows") {
		t.Fatalf("clipd merge a b -o out: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"inspect", out, "--json"},
		{"inspect", out, "--json", "-n", "1"},
		{"inspect", "--json", out, "--rows=1"},
		{"--quiet", "inspect", out, "--json"},
	} {
		code, stdout, stderr := runCLI(args...)
		var info map[string]any
		if err := json.Unmarshal([]byte(stdout), &info); code != exitOK || err != nil || info["rows"] != float64(4) {
			t.Errorf("clipd %v: exit %d, JSON %v\nstdout: %s\nstderr: %s", args, code, err, stdout, stderr)
		}
	}

	// After --, "--json" is the file's name, not a flag.
	code, stdout, stderr = runCLI("inspect", "--", "--json")
	if code != exitInput || !strings.Contains(stderr, "--json") || stdout != "" {
		t.Errorf("clipd inspect -- --json: exit %d, want %d\nstdout: %s\nstderr: %s", code, exitInput, stdout, stderr)
	}
	oneErrorLine(t, []string{"inspect", "--", "--json"}, stderr)
	code, stdout, _ = runCLI("inspect", out, "--", "--json")
	if code != exitUsage {
		t.Errorf("clipd inspect FILE -- --json: exit %d, want %d (two files)", code, exitUsage)
	}

	// A flag's value that looks like a flag is still its value.
	code, _, stderr = runCLI("weights", "fetch", "acme/tiny", "--retries", "-1")
	if code != exitUsage || !strings.Contains(stderr, "--retries -1") {
		t.Errorf("clipd weights fetch NAME --retries -1: exit %d: %s", code, stderr)
	}
	oneErrorLine(t, []string{"weights", "fetch", "acme/tiny", "--retries", "-1"}, stderr)
}

// TestHelpAndVersionCommands: `clipd help [COMMAND...]` is `clipd [COMMAND...] --help`, and
// `clipd version` is `clipd --version`; both print to stdout and exit 0.
func TestHelpAndVersionCommands(t *testing.T) {
	_, appHelp, _ := runCLI("--help")
	for _, c := range []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"help"}, []string{"COMMANDS:", "EXIT CODES:", "   2    bad usage", "help", "version"}},
		{[]string{"help", "embed"}, []string{"clipd embed", "--timeout", "GLOBAL OPTIONS", "--log-level"}},
		{[]string{"help", "weights", "fetch"}, []string{"clipd weights fetch", "refs/pr/66"}},
		{[]string{"--quiet", "help", "bench"}, []string{"clipd bench", "--duration"}},
		{[]string{"version"}, []string{"clipd version " + version}},
		{[]string{"--version"}, []string{"clipd version " + version}},
	} {
		code, stdout, stderr := runCLI(c.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("clipd %v: exit %d, stderr %q", c.args, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("clipd %v: stdout lacks %q:\n%s", c.args, w, stdout)
			}
		}
	}
	if _, stdout, _ := runCLI("help"); stdout != appHelp {
		t.Errorf("clipd help differs from clipd --help:\n%s\n---\n%s", stdout, appHelp)
	}
	if _, stdout, _ := runCLI("help", "embed"); !strings.Contains(stdout, "(e.g. 30s or 30)") {
		t.Errorf("clipd help embed: --timeout does not say how durations are written:\n%s", stdout)
	}
	for _, args := range [][]string{{"help", "frobnicate"}, {"help", "weights", "nope"}, {"version", "extra"}} {
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage || stdout != "" {
			t.Errorf("clipd %v: exit %d, want %d; stdout %q", args, code, exitUsage, stdout)
		}
		oneErrorLine(t, args, stderr)
	}
}

// TestGlobalFlagsAfterCommand: --log-level and --quiet work before and after the command,
// and a bad --log-level is a usage error wherever it is.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	bench := []string{"--weights", tinyModel, "--backend", "cpu", "--threads", "1", "-b", "1", "--duration", "0.05"}
	for _, c := range []struct {
		args []string
		info bool // INFO lines expected on stderr
	}{
		{append([]string{"--log-level", "error", "bench"}, bench...), false},
		{append([]string{"bench", "--log-level", "error"}, bench...), false},
		{append(append([]string{"bench"}, bench...), "--log-level=warn"), false},
		{append(append([]string{"bench"}, bench...), "-q"), false},
		{append([]string{"bench"}, bench...), true},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != exitOK {
			t.Fatalf("clipd %v: exit %d: %s", c.args, code, stderr)
		}
		if got := strings.Contains(stderr, "level=INFO"); got != c.info {
			t.Errorf("clipd %v: INFO lines %v, want %v:\n%s", c.args, got, c.info, stderr)
		}
	}
	for _, args := range [][]string{
		{"embed", "--log-level", "loud"},
		{"weights", "inspect", "--log-level", "loud"},
		{"inspect", "x.h5", "--log-level=loud"},
	} {
		code, _, stderr := runCLI(args...)
		if code != exitUsage || !strings.Contains(stderr, `--log-level "loud"`) {
			t.Errorf("clipd %v: exit %d: %s", args, code, stderr)
		}
		oneErrorLine(t, args, stderr)
	}
}
