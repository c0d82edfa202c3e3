package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// adminFlags are the flags every command that talks to the daemon shares.
type adminFlags struct {
	config *string
	admin  *string
	key    *string
	json   *bool
}

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	return &adminFlags{
		config: fs.String("config", "", "kiln's config file, to find its admin address"),
		admin:  fs.String("admin", "", "the admin API's base URL, e.g. http://127.0.0.1:8025 (overrides --config)"),
		key:    fs.String("key", "", "the admin API key (default: $KILN_ADMIN_KEY)"),
		json:   fs.Bool("json", false, "print machine-readable JSON"),
	}
}

// adminClient talks to a running daemon's admin API.
type adminClient struct {
	base string
	key  string
	http *http.Client
}

func (f *adminFlags) client() (*adminClient, error) {
	base := strings.TrimRight(*f.admin, "/")
	if base == "" {
		cfg, err := loadConfig(*f.config)
		if err != nil {
			return nil, err
		}
		base = "http://" + string(cfg.Admin.Listen)
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	key := *f.key
	if key == "" {
		key = os.Getenv("KILN_ADMIN_KEY")
	}
	return &adminClient{base: base, key: key, http: &http.Client{Timeout: 10 * time.Minute}}, nil
}

// apiError is the admin API's error shape.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends a request and decodes the JSON answer into out (when not nil).
func (c *adminClient) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach kiln's admin API at %s (is kiln running? --config or --admin name it): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s (%s)", e.Error.Message, e.Error.Code)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// printJSON writes v indented.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

var errNothingSelected = errors.New("name what to act on: --id, --account, --sender-domain, --recipient-domain, or --all")
