package mta

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the LOGIN mechanism (draft-murchison-
// sasl-login): obsolete but still what many applications' SMTP libraries
// use by default. go-sasl has only the client side.
type loginServer struct {
	auth     func(username, password string) error
	state    int
	username string
}

var _ sasl.Server = (*loginServer)(nil)

func (s *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch s.state {
	case 0:
		s.state = 1
		if len(response) > 0 { // initial response carries the user name
			s.username = string(response)
			s.state = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		s.username = string(response)
		s.state = 2
		return []byte("Password:"), false, nil
	case 2:
		s.state = 3
		return nil, true, s.auth(s.username, string(response))
	}
	return nil, false, errors.New("unexpected client response")
}
