package httpapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of every endpoint on the admin
// listener: this package's, the queue's, warm-up's, the suppression list's
// and breakers', the dashboard's, health and metrics. A test checks that
// it names every route the daemon registers, and nothing else.
//
//go:embed openapi.json
var OpenAPI []byte

func (a *API) openapi(w http.ResponseWriter, r *http.Request, _ Principal) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(OpenAPI)
}
