package mta

import (
	"net/http"

	"kiln/dashboard"
)

// dashboardHandler is the operator's web UI, fed by the stores.
func (srv *Server) dashboardHandler(auth *adminAuth) http.Handler {
	return dashboard.New(dashboard.Sources{
		Stats:        srv.stats,
		Warmup:       srv.warm,
		Events:       srv.events,
		Queue:        srv.store,
		Suppressions: dashboard.SuppressList(srv.suppress, srv.clk),
		Clock:        srv.clk,
	}, dashboard.Options{Authorize: auth.check, Log: srv.log})
}
