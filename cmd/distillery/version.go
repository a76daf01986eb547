package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildVersion is set by the Makefile with -ldflags "-X main.buildVersion=...".
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			info := map[string]string{"version": version(), "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH}
			if c.Bool("json") {
				return writeJSON(c, info)
			}
			fmt.Fprintf(c.App.Writer, "distillery %s (%s %s/%s)\n", info["version"], info["go"], info["os"], info["arch"])
			return nil
		},
	}
}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}

func writeJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
