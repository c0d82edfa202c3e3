package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"kiln/configs"
	"kiln/mta"
)

func init() {
	register(&command{
		path:  "serve",
		short: "run the kiln daemon",
		long: `Runs kiln: the submission listeners, the queue, delivery, and the admin
API. Without --config, kiln runs on its embedded defaults: submission on
127.0.0.1:2525 (loopback may relay without AUTH), admin API on
127.0.0.1:8025, data in ./kiln-data, delivery to each domain's MX on port 25.

SIGINT or SIGTERM stops kiln gracefully: it stops accepting, lets
transactions in progress finish for up to --grace, and leaves the queue
consistent on disk.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			cfgPath := fs.String("config", "", "config file (TOML); empty: embedded defaults")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				cfg, err := loadConfig(*cfgPath)
				if err != nil {
					for _, e := range splitErrors(err) {
						fmt.Fprintln(os.Stderr, e)
					}
					return exitError{1}
				}
				return serve(cfg)
			}
		},
	})
}

func serve(cfg *configs.Config) error {
	log := newLogger(cfg)
	slog.SetDefault(log)
	srv, err := mta.New(cfg, mta.Options{Log: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx, nil)
}

func newLogger(cfg *configs.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
