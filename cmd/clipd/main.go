// main.go: clipd's entry point: the app, its global flags (--quiet, --log-level, --s3-*), the list
// of commands (and `clipd version`), and the path from an error to one line on stderr and an
// exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/clipd/clipd/embed"
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
	newSearchCommand,
	newEmbedTextCommand,
	newExportCommand,
	newVersionCommand,
}

func main() {
	containHDF5 = true
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run runs clipd with args (args[0] is the program name) and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, normalizeArgs(app, args))
	if err == nil {
		return exitOK
	}
	var child *childExited
	if errors.As(err, &child) { // a contained command's child said it all
		return child.code
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
			&cli.StringFlag{Name: "s3-endpoint", Usage: "`URL` of an S3-compatible store for s3:// locations (default: AWS_ENDPOINT_URL, else AWS)"},
			&cli.StringFlag{Name: "s3-region", Usage: "`REGION` of s3:// buckets (default: AWS_REGION or the profile's, else us-east-1)"},
			&cli.StringFlag{Name: "s3-profile", Usage: "`NAME` of the AWS profile for s3:// locations (default: AWS_PROFILE, else default)"},
		},
		// `clipd help [COMMAND...]` is listed by urfave/cli; normalizeArgs makes it
		// `clipd [COMMAND...] --help`, so it reaches subcommands and refuses unknown names as usage errors.
		HideHelpCommand: false,
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
	addGlobalOptionsHelp(app.Commands, app.Flags)
	return app
}

// newVersionCommand is `clipd version`, the same as `clipd --version`.
func newVersionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print clipd's version",
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, 0); err != nil {
				return err
			}
			cli.ShowVersion(cCtx)
			return nil
		},
	}
}

// addGlobalOptionsHelp lists the app's global flags in each command's help: normalizeArgs
// lets them come after the command too (`clipd embed --log-level debug`).
func addGlobalOptionsHelp(cmds []*cli.Command, global []cli.Flag) {
	text := "\nGLOBAL OPTIONS (before or after the command):\n"
	for _, f := range global {
		text += "   " + f.String() + "\n"
	}
	for _, c := range cmds {
		if len(c.Subcommands) > 0 {
			addGlobalOptionsHelp(c.Subcommands, global)
		} else if c.CustomHelpTemplate == "" {
			c.CustomHelpTemplate = cli.CommandHelpTemplate + text
		}
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
	s3     embed.S3
}

func globalsFrom(cCtx *cli.Context) globals {
	g := globals{stdout: cCtx.App.Writer, stderr: cCtx.App.ErrWriter}
	// Global flags given after the command were moved before it by normalizeArgs.
	g.quiet = cCtx.Bool("quiet")
	g.s3 = embed.S3{Endpoint: cCtx.String("s3-endpoint"), Region: cCtx.String("s3-region"), Profile: cCtx.String("s3-profile")}
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

// checkArgs requires between min and max positional arguments (max < 0: any number). Flags
// may come after the arguments: normalizeArgs moved them before.
func checkArgs(cCtx *cli.Context, min, max int) error {
	args := cCtx.Args().Slice()
	if max == 0 && len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q; run \"%s --help\"", cCtx.Command.HelpName, strings.Join(args, " "), cCtx.Command.HelpName)
	}
	if len(args) < min || (max >= 0 && len(args) > max) {
		return usageErrorf("%s takes %s, got %d argument(s); run \"%s --help\"", cCtx.Command.HelpName, cCtx.Command.ArgsUsage, len(args), cCtx.Command.HelpName)
	}
	return nil
}
