package main

import (
	"flag"
	"fmt"
	"runtime/debug"
)

func init() {
	register(&command{
		path:  "version",
		short: "print kiln's version and the Go version it was built with",
		setup: func(fs *flag.FlagSet) func([]string) error {
			return func([]string) error {
				v := "(devel)"
				goVersion := ""
				if bi, ok := debug.ReadBuildInfo(); ok {
					goVersion = bi.GoVersion
					if bi.Main.Version != "" {
						v = bi.Main.Version
					}
				}
				fmt.Printf("kiln %s %s\n", v, goVersion)
				return nil
			}
		},
	})
}
