package stats

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"kiln/warmup"
)

// Day is one day of an (egress, site)'s warm-up: the cap the controller set
// and how many messages it let through, as last sampled that day.
type Day struct {
	Date string `json:"date"` // YYYY-MM-DD in the warm-up's time zone
	Cap  int    `json:"cap"`  // -1: no cap (warm, or plan complete)
	Sent int    `json:"sent"`
	Day  int    `json:"day,omitempty"` // plan day
	// State is the warm-up state when sampled (ramping, held, paused, warm).
	State string `json:"state,omitempty"`
}

// WarmupHistory is the recorded days of one (egress, site), oldest first.
type WarmupHistory struct {
	Egress   string `json:"egress"`
	Site     string `json:"site"`
	Provider string `json:"provider,omitempty"`
	Days     []Day  `json:"days"`
}

type dayKey struct{ egress, site string }

type dayHist struct {
	provider string
	days     []Day
	dirty    bool
}

type storedDays struct {
	Provider string `json:"provider,omitempty"`
	Days     []Day  `json:"days"`
}

func warmupKey(k dayKey) []byte {
	b := append([]byte(nil), prefix...)
	b = append(b, kindWarmup, '/')
	b = append(b, k.egress...)
	b = append(b, 0)
	return append(b, k.site...)
}

func (h *dayHist) marshal() ([]byte, error) {
	return json.Marshal(storedDays{Provider: h.provider, Days: h.days})
}

func (s *Stats) loadDays(rest, v []byte) bool {
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return false
	}
	var sd storedDays
	if err := json.Unmarshal(v, &sd); err != nil {
		return false
	}
	s.days[dayKey{string(rest[:i]), string(rest[i+1:])}] = &dayHist{provider: sd.Provider, days: sd.Days}
	return true
}

// RecordWarmup records today's cap and sent count of every (egress, site)
// in st, replacing an earlier sample of the same date. Flush calls it with
// Options.Warmup's status; it is exported for callers that sample otherwise.
func (s *Stats) RecordWarmup(st warmup.Status) {
	if st.Date == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range st.Egress {
		for _, site := range e.Sites {
			dk := dayKey{e.Name, site.Site}
			h := s.days[dk]
			if h == nil {
				h = &dayHist{}
				s.days[dk] = h
			}
			d := Day{Date: st.Date, Cap: site.Cap, Sent: site.Sent, Day: site.Day, State: string(site.State)}
			h.provider = site.Provider
			switch n := len(h.days); {
			case n > 0 && h.days[n-1].Date == d.Date:
				if h.days[n-1] == d {
					continue
				}
				h.days[n-1] = d
			case n > 0 && h.days[n-1].Date > d.Date:
				continue // the clock went back: keep what was recorded
			default:
				h.days = append(h.days, d)
				if len(h.days) > s.opts.DaysKeep {
					h.days = slices.Delete(h.days, 0, len(h.days)-s.opts.DaysKeep)
				}
			}
			h.dirty = true
		}
	}
}

// Warmup returns the recorded history of every (egress, site), sorted by
// egress and site; egress "" selects all.
func (s *Stats) Warmup(egress string) []WarmupHistory {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []WarmupHistory{}
	for k, h := range s.days {
		if egress != "" && k.egress != egress {
			continue
		}
		out = append(out, WarmupHistory{Egress: k.egress, Site: k.site, Provider: h.provider, Days: slices.Clone(h.days)})
	}
	slices.SortFunc(out, func(a, b WarmupHistory) int {
		if c := strings.Compare(a.Egress, b.Egress); c != 0 {
			return c
		}
		return strings.Compare(a.Site, b.Site)
	})
	return out
}
