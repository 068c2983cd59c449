// flags.go: how clipd's command line is read beyond what urfave/cli does itself: one syntax
// for every duration flag (durationFlag), and flags anywhere on the line (normalizeArgs).
package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// durationSyntax is how every duration flag's help and errors say a duration is written.
const durationSyntax = "e.g. 30s or 30"

// durationFlag is a flag holding a positive duration: a Go duration (30s, 1m30s, 250ms) or
// a bare number of seconds (30, 2.5). Read it with durationFrom.
func durationFlag(name string, aliases []string, value time.Duration, usage string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: name, Aliases: aliases, Value: &durationValue{d: value},
		Usage: usage + " (" + durationSyntax + ")"}
}

// durationFrom is the value of the durationFlag called name.
func durationFrom(cCtx *cli.Context, name string) time.Duration {
	if v, ok := cCtx.Generic(name).(*durationValue); ok {
		return v.d
	}
	return 0
}

// durationValue is a durationFlag's cli.Generic value. A refused value becomes a usage error
// naming the flag (onUsageError).
type durationValue struct{ d time.Duration }

func (v *durationValue) String() string { return v.d.String() }

func (v *durationValue) Set(s string) error {
	notDuration := fmt.Errorf("not a duration; want a Go duration or seconds, %s", durationSyntax)
	var d time.Duration
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		ns := math.Round(secs * float64(time.Second))
		if math.IsNaN(ns) || math.Abs(ns) >= math.MaxInt64 {
			return notDuration
		}
		d = time.Duration(ns)
	} else if d, err = time.ParseDuration(s); err != nil {
		return notDuration
	}
	if d <= 0 {
		return fmt.Errorf("want a duration more than 0, %s", durationSyntax)
	}
	v.d = d
	return nil
}

// normalizeArgs rewrites a command line (args[0] is the program) into the order urfave/cli
// v2 parses, which stops reading a command's flags at its first argument:
//   - a leaf command's flags after its arguments move before them (a flag's value goes with
//     it, even one that starts with a dash); "--" ends the flags and moves before the
//     arguments;
//   - the app's global flags (--quiet, --log-level) given after the command move before it,
//     unless the command has a flag of that name;
//   - `help [COMMAND...]` becomes `[COMMAND...] --help`.
//
// Unknown commands, and unknown subcommands of a parent, are left as they are for the app to
// refuse; an unknown flag is taken as one without a value and left to the parser to refuse. A
// last flag that lacks its value ends the line, so that the parser says so rather than take
// an argument, or the command's name, as its value.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	global, rest := leadingFlags(app.Flags, args[1:])
	out := append([]string{args[0]}, global...)
	if len(rest) == 0 || rest[0] == "--" {
		return append(out, rest...)
	}
	if rest[0] == "help" || rest[0] == "h" {
		return normalizeArgs(app, append(append(out, rest[1:]...), "--help"))
	}
	var hoisted, path []string // global flags found after the command; the command's names
	cmds := app.Commands
	for len(rest) > 0 {
		var cmd *cli.Command
		for _, c := range cmds {
			if c.HasName(rest[0]) {
				cmd = c
			}
		}
		if cmd == nil {
			break
		}
		path = append(path, rest[0])
		rest = rest[1:]
		var h, own, positional []string
		var cut bool
		if len(cmd.Subcommands) == 0 {
			h, own, positional, cut = splitFlags(app.Flags, cmd.Flags, rest)
			rest = nil
		} else { // a parent: its own flags, then a subcommand's name
			var lead []string
			lead, rest = leadingFlags(append(cmd.Flags[:len(cmd.Flags):len(cmd.Flags)], app.Flags...), rest)
			h, own, _, cut = splitFlags(app.Flags, cmd.Flags, lead)
		}
		hoisted = append(hoisted, h...)
		if cut && len(own) == 0 { // a global flag without its value
			return append(out, hoisted...)
		}
		path = append(append(path, own...), positional...)
		if cut || len(cmd.Subcommands) == 0 {
			return append(append(out, hoisted...), path...)
		}
		cmds = cmd.Subcommands
	}
	return append(append(append(out, hoisted...), path...), rest...)
}

// leadingFlags splits args at the first argument that is neither a flag nor a flag's value.
func leadingFlags(flags []cli.Flag, args []string) (lead, rest []string) {
	i := 0
	for i < len(args) && isFlag(args[i]) && args[i] != "--" {
		i += flagLen(flags, args[i:])
	}
	i = min(i, len(args)) // a last flag without its value: the parser will say so
	return args[:i], args[i:]
}

// splitFlags sorts a command's args into the global flags to hoist before the command, the
// command's own (and unknown) flags, and its arguments, after "--" when one was given. cut:
// the last flag lacks its value; it is the last of hoisted (own empty) or of own, and the
// arguments are dropped.
func splitFlags(global, own []cli.Flag, args []string) (hoisted, flags, positional []string, cut bool) {
	for i := 0; i < len(args); {
		a := args[i]
		if a == "--" {
			positional = append(append([]string{"--"}, positional...), args[i+1:]...)
			break
		}
		if !isFlag(a) {
			positional = append(positional, a)
			i++
			continue
		}
		dest, set := &flags, own
		if findFlag(own, a) == nil && findFlag(global, a) != nil {
			dest, set = &hoisted, global
		}
		n := i + flagLen(set, args[i:])
		if n > len(args) {
			*dest = append(*dest, a)
			if dest == &hoisted {
				flags = nil
			}
			return hoisted, flags, nil, true
		}
		*dest = append(*dest, args[i:n]...)
		i = n
	}
	return hoisted, flags, positional, false
}

// isFlag: "-x", "--xy", "--xy=v" and "--" are flags; "-" (stdin) is an argument.
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagLen is how many of args the flag args[0] spans: 2 when it takes a value given as the
// next argument, else 1.
func flagLen(flags []cli.Flag, args []string) int {
	if strings.Contains(args[0], "=") {
		return 1
	}
	if f, ok := findFlag(flags, args[0]).(interface{ TakesValue() bool }); ok && f.TakesValue() {
		return 2
	}
	return 1
}

// findFlag is the flag among flags that arg ("-n", "--rows", "--rows=3") names, or nil.
func findFlag(flags []cli.Flag, arg string) cli.Flag {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
