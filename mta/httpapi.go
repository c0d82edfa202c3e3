package mta

import (
	"context"
	"errors"
	"net/http"

	"kiln/mta/httpapi"
	"kiln/policy/suppress"
)

// suppressHandler serves the suppression list (through the HTTP API, which
// scopes it for account keys) and the breakers (admin only).
func (srv *Server) suppressHandler() http.Handler {
	return suppress.Handler(srv.suppress, suppress.HandlerOptions{Breaker: srv.breaker, OnReset: srv.releaseAccount, Log: srv.log})
}

// httpAPI is the JSON API for applications (account keys) and operators.
func (srv *Server) httpAPI(sh http.Handler) *httpapi.API {
	return httpapi.New(httpapi.Deps{Submit: srv.submitHTTP, Queue: srv.store, Events: srv.events, Suppressions: sh,
		Accounts: srv.cfg.Accounts, AdminKeyHash: srv.cfg.Admin.KeyHash, Clock: srv.clk, Log: srv.log,
		MaxMessageBytes: int64(srv.cfg.Submission.MaxMessageSize)})
}

func (srv *Server) submitHTTP(ctx context.Context, s httpapi.Submission) (string, error) {
	id, err := srv.Submit(ctx, Submission{Account: s.Account, From: s.From, To: s.To, Data: s.Data,
		Tags: s.Tags, Metadata: s.Metadata, Priority: s.Priority, Client: s.Client})
	var se *SubmitError
	switch {
	case errors.As(err, &se):
		return "", &httpapi.SubmitError{Code: se.Code, Enhanced: se.Enhanced, Message: se.Message, Field: se.Field}
	case errors.Is(err, ErrUnknownAccount):
		return "", httpapi.ErrUnknownAccount
	}
	return id, err
}
