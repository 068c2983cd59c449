// flags_test.go: the order in which flags and arguments may come (normalizeArgs).
package main

import (
	"reflect"
	"strings"
	"testing"
)

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
