package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"kiln/configs"
	"kiln/mta/httpapi"
)

func init() {
	register(&command{
		path:  "config check",
		args:  "FILE",
		short: "check a config file and report every problem with its line and key",
		long: `Reads FILE the way "kiln serve" does and prints each problem as
FILE:LINE: KEY: what is wrong. Exits 0 when the file is good, 1 otherwise.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one FILE")
				}
				if _, err := loadConfig(args[0]); err != nil {
					for _, e := range splitErrors(err) {
						fmt.Fprintln(os.Stderr, e)
					}
					return exitError{1}
				}
				fmt.Printf("%s: ok\n", args[0])
				return nil
			}
		},
	})
	register(&command{
		path:  "account hash",
		short: "make a bcrypt password_hash for an [[account]] from a password on stdin",
		long: `Reads the password from the first line of standard input (or takes
--password) and prints its bcrypt hash for the password_hash key:

    kiln account hash < password.txt
    kiln account hash --password 'correct horse'`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			password := fs.String("password", "", "the password (visible to other users in the process list; prefer stdin)")
			cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31)")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				pw := *password
				if pw == "" {
					line, err := bufio.NewReader(os.Stdin).ReadString('\n')
					if err != nil && !errors.Is(err, io.EOF) {
						return err
					}
					pw = strings.TrimRight(line, "\r\n")
				}
				if pw == "" {
					return usagef("empty password: give it on stdin or with --password")
				}
				h, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
				if err != nil {
					return err
				}
				fmt.Println(string(h))
				return nil
			}
		},
	})
}

func init() {
	register(&command{
		path:  "account key",
		args:  "ACCOUNT",
		short: "make an HTTP API key for an account, and the api_key_hash to configure",
		long: `Prints a new random API key for ACCOUNT (kiln_<account>_<secret>) and its
bcrypt hash. Put the hash in the account's api_key_hash; give the key to the
application, which sends it as "Authorization: Bearer <key>". kiln keeps only
the hash: a lost key cannot be recovered, only replaced.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			asJSON := fs.Bool("json", false, "print {\"key\", \"api_key_hash\"} as JSON")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one ACCOUNT name")
				}
				key, err := httpapi.NewKey(args[0])
				if err != nil {
					return err
				}
				h, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.DefaultCost)
				if err != nil {
					return err
				}
				hash := string(h)
				if *asJSON {
					return printJSON(map[string]string{"key": key, "api_key_hash": hash})
				}
				fmt.Printf("key:          %s\napi_key_hash: %s\n", key, hash)
				return nil
			}
		},
	})
}

// loadConfig reads the config file at path, or the embedded defaults when
// path is empty.
func loadConfig(path string) (*configs.Config, error) {
	if path == "" {
		return configs.Default(), nil
	}
	return configs.Load(path)
}

func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
