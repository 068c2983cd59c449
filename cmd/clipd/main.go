// main.go: clipd's entry point: the app, its global flags (--quiet, --log-level), the list
// of commands, and the path from an error to one line on stderr and an exit code.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3" ./cmd/clipd
var version = "dev"

// commands are clipd's commands, in help order; adding one is adding its constructor here.
var commands = []func() *cli.Command{
	newWeightsCommand,
	newEmbedCommand,
	newBenchCommand,
	newMergeCommand,
	newInspectCommand,
}

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run runs clipd with args (args[0] is the program name) and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "clipd: %s\n", errorLine(err))
	return exitCode(err)
}

// newApp builds the CLI; output goes to stdout and stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "clipd",
		Usage:   "CLIP image embeddings of URL lists, on a GPU or the CPU",
		Version: version,
		Description: "clipd downloads images from lists of URLs (Open Images V7 first of all), embeds them\n" +
			"with CLIP ViT-B/32 and writes the embeddings to HDF5.",
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		Writer:                stdout,
		ErrWriter:             stderr,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bars and no informational messages"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"CLIPD_LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		},
		HideHelpCommand: true,
		Before: func(cCtx *cli.Context) error {
			if _, err := parseLevel(cCtx.String("log-level")); err != nil {
				return err
			}
			return nil
		},
		// The error is printed, and the exit code chosen, once, by run.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(cCtx *cli.Context) error {
			if cCtx.Args().Present() {
				return usageErrorf("unknown command %q; run \"clipd --help\" for the list", cCtx.Args().First())
			}
			cli.ShowAppHelp(cCtx)
			return usageErrorf("no command given")
		},
	}
	for _, newCmd := range commands {
		app.Commands = append(app.Commands, newCmd())
	}
	app.OnUsageError = onUsageError
	setUsageErrorHandlers(app.Commands)
	addQuietFlag(app.Commands)
	return app
}

// addQuietFlag gives every command its own --quiet/-q, so `clipd embed --quiet` works as
// well as `clipd --quiet embed` (globalsFrom honours either).
func addQuietFlag(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) > 0 {
			addQuietFlag(c.Subcommands)
			continue
		}
		c.Flags = append(c.Flags, &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"},
			Usage: "no progress bars and no informational messages"})
	}
}

// onUsageError turns flag parsing errors into usage errors (exit code 2).
func onUsageError(cCtx *cli.Context, err error, _ bool) error {
	name := "clipd"
	if cCtx.Command != nil && cCtx.Command.HelpName != "" {
		name = cCtx.Command.HelpName
	}
	return usageErrorf("%v; run \"%s --help\"", err, name)
}

func setUsageErrorHandlers(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrorHandlers(c.Subcommands)
	}
}

// globals are the settings every command shares.
type globals struct {
	quiet  bool
	logger *slog.Logger
	stdout io.Writer
	stderr io.Writer
	tty    bool // stderr is a terminal (progress bars are drawn only then)
}

func globalsFrom(cCtx *cli.Context) globals {
	g := globals{stdout: cCtx.App.Writer, stderr: cCtx.App.ErrWriter}
	// --quiet may be given to the app or to the command: each context answers for its own.
	for _, c := range cCtx.Lineage() {
		if c.Command != nil || c.App != nil {
			g.quiet = g.quiet || c.Bool("quiet")
		}
	}
	level, _ := parseLevel(cCtx.String("log-level"))
	if g.quiet && !cCtx.IsSet("log-level") {
		level = slog.LevelWarn
	}
	g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	if f, ok := g.stderr.(*os.File); ok {
		g.tty = term.IsTerminal(int(f.Fd()))
	}
	return g
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, usageErrorf("--log-level %q: want debug, info, warn or error", s)
}

// checkArgs requires between min and max positional arguments (max < 0: any number) and
// catches flags written after them, which the flag parser would take as arguments.
func checkArgs(cCtx *cli.Context, min, max int) error {
	args := cCtx.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return usageErrorf("%q after the arguments: flags go before them (%s [flags] %s)", a, cCtx.Command.HelpName, cCtx.Command.ArgsUsage)
		}
	}
	if len(args) < min || (max >= 0 && len(args) > max) {
		return usageErrorf("%s takes %s, got %d argument(s); run \"%s --help\"", cCtx.Command.HelpName, cCtx.Command.ArgsUsage, len(args), cCtx.Command.HelpName)
	}
	return nil
}
