package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"kiln/events/webhook"
)

// A receiver checks the signature over the raw body before trusting it,
// answers 2xx only once the events are stored, and drops event ids it has
// already seen: kiln sends again whatever it got no 2xx for.
func ExampleVerify() {
	const secret = "the secret of this [[webhook]] entry"
	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps this in its database
	http.HandleFunc("/kiln", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch []webhook.Payload
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range batch {
			if seen[p.EventID] {
				continue
			}
			seen[p.EventID] = true
			if p.Event == webhook.Bounce && p.BounceType == "hard" {
				// unsubscribe p.Recipient from the list
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
