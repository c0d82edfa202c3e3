package mta

import (
	"encoding/json"
	"net/http"
	"time"

	"kiln/configs"
)

// Warm-up endpoints of the admin API: status, the rest of a plan, and the
// operator's controls (pause, resume, set the plan day).

func (srv *Server) mountWarmup(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/warmup/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, srv.warm.Status(srv.clk.Now()))
	})
	mux.HandleFunc("GET /api/v1/warmup/plan", func(w http.ResponseWriter, r *http.Request) {
		egress := r.URL.Query().Get("egress")
		if egress == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "egress is required")
			return
		}
		p, err := srv.warm.Plan(egress, srv.clk.Now())
		if err != nil {
			writeError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /api/v1/warmup/pause", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Egress string `json:"egress"`
			Site   string `json:"site"`
			For    string `json:"for"` // a duration; "" pauses until resumed
		}
		if !readJSON(w, r, &req) {
			return
		}
		var d time.Duration
		if req.For != "" {
			var err error
			if d, err = configs.ParseDuration(req.For); err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "for: "+err.Error())
				return
			}
		}
		srv.warmControl(w, req.Egress, srv.warm.Pause(req.Egress, req.Site, d, srv.clk.Now()))
	})
	mux.HandleFunc("POST /api/v1/warmup/resume", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Egress string `json:"egress"`
			Site   string `json:"site"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		srv.warmControl(w, req.Egress, srv.warm.Resume(req.Egress, req.Site, srv.clk.Now()))
	})
	mux.HandleFunc("POST /api/v1/warmup/day", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Egress string `json:"egress"`
			Day    int    `json:"day"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Day < 1 {
			writeError(w, http.StatusBadRequest, "bad_request", "day must be 1 or more")
			return
		}
		srv.warmControl(w, req.Egress, srv.warm.SetDay(req.Egress, req.Day, srv.clk.Now()))
	})
}

// warmControl answers a control request: the egress's new status, or the
// controller's refusal.
func (srv *Server) warmControl(w http.ResponseWriter, egress string, err error) {
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// Lanes blocked by the old state may move now.
	srv.sched.poke()
	srv.sched.do(srv.ctx, func() {
		now := srv.clk.Now()
		for _, ln := range srv.sched.lanes {
			if ln.waiting {
				srv.sched.wakeLaneAt(ln, now)
			}
		}
	})
	st := srv.warm.Status(srv.clk.Now())
	for _, e := range st.Egress {
		if e.Name == egress {
			writeJSON(w, http.StatusOK, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, json.RawMessage(`{}`))
}
