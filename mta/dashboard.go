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
		PendingByDomain: func(limit int) ([]dashboard.DomainCount, error) {
			var out []dashboard.DomainCount
			for _, d := range srv.store.PendingByDomain(limit) {
				out = append(out, dashboard.DomainCount{Domain: d.Domain, Pending: d.Pending})
			}
			return out, nil
		},
		Clock: srv.clk,
	}, dashboard.Options{Authorize: auth.check, Log: srv.log})
}
