// flags_test.go: the duration flag's syntax and limits, and the order in which flags and
// arguments may come (normalizeArgs).
package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/embed"
)

func TestDurationValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"30", 30 * time.Second},
		{"2.5", 2500 * time.Millisecond},
		{"0.05", 50 * time.Millisecond},
		{"1h", time.Hour},
	} {
		var d durationValue
		if err := d.Set(c.in); err != nil || d.d != c.want {
			t.Errorf("Set(%q) = %v, %v; want %v", c.in, d.d, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "0s", "-1", "-5s", "-0.5", "abc", "30x", "NaN", "Inf", "1e300", "s"} {
		var d durationValue
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) = %v, want an error", in, d.d)
		} else if !strings.Contains(err.Error(), "e.g. 30s or 30") {
			t.Errorf("Set(%q): %v does not say how to write a duration", in, err)
		}
	}
}

// TestDurationFlags: every duration flag takes both syntaxes through the real command line,
// and refuses zero, negatives and junk with a usage error that names the flag.
func TestDurationFlags(t *testing.T) {
	// embed: the flags as embedOptionsFrom reads them, without running the pipeline.
	var got embedOptions
	orig := commands
	t.Cleanup(func() { commands = orig })
	commands = append([]func() *cli.Command(nil), orig...)
	for i := range commands {
		if commands[i]().Name == "embed" {
			commands[i] = func() *cli.Command {
				c := newEmbedCommand()
				c.Action = func(cCtx *cli.Context) error {
					var err error
					got, err = embedOptionsFrom(cCtx, globalsFrom(cCtx), func(string) string { return "" })
					return err
				}
				return c
			}
		}
	}
	for _, c := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"embed"}, embed.DefaultTimeout},
		{[]string{"embed", "--timeout", "30"}, 30 * time.Second},
		{[]string{"embed", "--timeout", "2.5"}, 2500 * time.Millisecond},
		{[]string{"embed", "--timeout=1m30s"}, 90 * time.Second},
		{[]string{"embed", "--timeout", "250ms"}, 250 * time.Millisecond},
	} {
		got = embedOptions{}
		if code, _, stderr := runCLI(c.args...); code != exitOK || got.Timeout != c.want {
			t.Errorf("clipd %v: exit %d, timeout %v, want %v; stderr %q", c.args, code, got.Timeout, c.want, stderr)
		}
	}
	if _, stdout, _ := runCLI("embed", "--help"); !strings.Contains(stdout, "(e.g. 30s or 30) (default: "+embed.DefaultTimeout.String()+")") {
		t.Errorf("embed --help: --timeout's text:\n%s", stdout)
	}

	// bench: a real (short) run in either syntax.
	bench := []string{"bench", "--weights", tinyModel, "--backend", "cpu", "--threads", "1", "-b", "1", "--json"}
	for _, d := range []string{"50ms", "0.05"} {
		for _, name := range []string{"--duration", "-d"} {
			args := append(append([]string{}, bench...), name, d)
			if code, stdout, stderr := runCLI(args...); code != exitOK || !strings.Contains(stdout, `"results"`) {
				t.Errorf("clipd %v: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
			}
		}
	}

	for _, c := range []struct{ flag, value string }{
		{"--timeout", "0"}, {"--timeout", "-5s"}, {"--timeout", "soon"}, {"--timeout", "30x"},
		{"--duration", "0"}, {"-d", "-1"}, {"--duration", "0s"}, {"--duration", "ten"},
	} {
		cmd := "embed"
		if c.flag != "--timeout" {
			cmd = "bench"
		}
		args := []string{cmd, c.flag, c.value}
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "flag -"+strings.TrimLeft(c.flag, "-")) ||
			!strings.Contains(stderr, "e.g. 30s or 30") {
			t.Errorf("clipd %v: exit %d, want %d naming the flag\nstderr: %s", args, code, exitUsage, stderr)
		}
		oneErrorLine(t, args, stderr)
	}
}

func TestFlagOrder(t *testing.T) {
	app := newApp(nil, nil)
	for _, c := range []struct{ in, want string }{
		// Flags after the arguments come before them; values stay with their flags.
		{"merge a.h5 b.h5 -o out.h5", "merge -o out.h5 a.h5 b.h5"},
		{"inspect f.h5 --json -n 3", "inspect --json -n 3 f.h5"},
		{"inspect f.h5 --rows=3", "inspect --rows=3 f.h5"},
		{"weights inspect x --json", "weights inspect --json x"},
		{"weights fetch a/b --retries -1", "weights fetch --retries -1 a/b"},
		// -- ends the flags and stays, so what follows it remains arguments.
		{"inspect -- --json", "inspect -- --json"},
		{"inspect f.h5 -- --json", "inspect -- f.h5 --json"},
		{"merge a.h5 -o out.h5 -- -b.h5", "merge -o out.h5 -- a.h5 -b.h5"},
		// A last flag without its value ends the line: the parser must not take an argument
		// or the command's name for its value.
		{"inspect x.h5 --rows", "inspect --rows"},
		{"inspect x.h5 --log-level", "--log-level"},
		{"-q weights fetch --log-level", "-q --log-level"},
		// Global flags after the command move before it (unless the command has its own).
		{"embed --log-level debug -i x", "--log-level debug embed -i x"},
		{"inspect f.h5 -q --log-level=warn", "-q --log-level=warn inspect f.h5"},
		{"--quiet weights fetch a/b --log-level error", "--quiet --log-level error weights fetch a/b"},
		{"weights -q fetch a/b", "-q weights fetch a/b"},
		{"weights --log-level debug fetch a/b", "--log-level debug weights fetch a/b"},
		{"weights --log-level", "--log-level"},
		// help COMMAND... is COMMAND... --help.
		{"help", "--help"},
		{"help embed", "embed --help"},
		{"-q help weights fetch", "-q weights fetch --help"},
		{"help frobnicate", "frobnicate --help"},
		// Left alone: unknown commands and flags, a parent's unknown subcommand, "-" (stdin).
		{"frobnicate --json x", "frobnicate --json x"},
		{"weights nope --json", "weights nope --json"},
		{"embed --frobnicate x", "embed --frobnicate x"},
		{"embed -i - --json", "embed -i - --json"},
		{"--log-level debug", "--log-level debug"},
		{"", ""},
	} {
		in := append([]string{"clipd"}, strings.Fields(c.in)...)
		want := append([]string{"clipd"}, strings.Fields(c.want)...)
		if got := normalizeArgs(app, in); !reflect.DeepEqual(got, want) {
			t.Errorf("normalizeArgs(%q) = %q, want %q", c.in, strings.Join(got[1:], " "), c.want)
		}
	}
}
