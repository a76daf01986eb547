// Command distillery turns expensive LLM calls into cheap, self-hosted small
// models: harvest a teacher's answers, train a student, quantize, evaluate
// and publish it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/pipeline"
	"github.com/distillery/distillery/recipes"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitInvalid = 2
	exitGate    = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) && exit.Error() == "" {
		return exit.ExitCode()
	}
	fmt.Fprintln(stderr, "distillery:", err)
	return exitCode(err)
}

// exitCode maps an error to 1 (failure), 2 (invalid input) or 3 (quality
// gate failed).
func exitCode(err error) int {
	var rerrs recipes.Errors
	var rowErrs datasets.RowErrors
	var rowErr datasets.RowError
	var exit cli.ExitCoder
	switch {
	case errors.Is(err, pipeline.ErrQualityGate):
		return exitGate
	case errors.As(err, &rerrs), errors.As(err, &rowErrs), errors.As(err, &rowErr),
		errors.Is(err, pipeline.ErrInvalidInput), errors.Is(err, fs.ErrNotExist):
		// A missing input file is the user's input too.
		return exitInvalid
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return exitFailure
}

// usageError marks a command-line mistake (exit code 2).
func usageError(format string, args ...any) error {
	return pipeline.Invalid(fmt.Errorf(format, args...))
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return pipeline.Invalid(err)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "distillery",
		Usage:                "distil an LLM's answers into a small self-hosted model",
		Version:              version(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
		OnUsageError:         onUsageError,
		ExitErrHandler:       func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "runs-dir", Value: "runs", EnvVars: []string{"DISTILLERY_RUNS_DIR"}, Usage: "folder holding run folders"},
		},
		Commands: []*cli.Command{
			validateCommand(),
			runCommand(),
			runsCommand(),
			dataCommand(),
			modelCommand(),
			generateCommand(),
			tokenizeCommand(),
			tokenizerCommand(),
			serveCommand(),
			costCommand(),
			versionCommand(),
		},
		Description: "Exit codes: 0 ok, 1 failure, 2 invalid input, 3 quality gate failed.",
	}
	setUsageErrors(app.Commands)
	return app
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrors(c.Subcommands)
	}
}
