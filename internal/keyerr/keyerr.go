// Package keyerr is the error a package returns when one config key holds a bad
// value. The config loader turns the key path into the file and line where the
// key was written, so every package can validate its own section without
// knowing about files.
package keyerr

import "fmt"

// Error names the config key (a dotted path with array indexes, as in
// "account[2].sender_domains" or "submission.listen") and what is wrong with it.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// New returns an *Error for key with a formatted message.
func New(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Under prefixes the key of err with parent when err is an *Error, so a section
// can validate its own keys with short names and the caller can place them.
// Other errors are returned unchanged.
func Under(parent string, err error) error {
	e, ok := err.(*Error)
	if !ok || parent == "" {
		return err
	}
	return &Error{Key: parent + "." + e.Key, Msg: e.Msg}
}
