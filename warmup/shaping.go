package warmup

// Shaping is how an egress may talk to one site: the delivery code enforces
// Connections and MessagesPerConnection; the message rate is enforced by
// Reserve (and reported here for the connection pool's own pacing).
type Shaping struct {
	// Connections is the most concurrent connections from the egress to the
	// site.
	Connections int `json:"connections"`
	// MessagesPerConnection before the connection is closed and reopened.
	MessagesPerConnection int `json:"messages_per_connection"`
	// Rate is the most messages per second (+Inf: no limit).
	Rate Rate `json:"rate"`
}

// builtinShaping are starting points for a warmed IP, per egress and
// provider group (PROVIDERS.md §2a). No mailbox provider publishes connection
// or rate limits for Gmail, Yahoo or Microsoft: these are what an MTA vendor
// ships [K-ex], [K-co], plus the limits Comcast and Cox state themselves.
var (
	// [K-ex] "default": 10 connections per path, 100 messages per connection,
	// 100/s.
	defaultShaping = Shaping{Connections: 10, MessagesPerConnection: 100, Rate: 100}

	builtinShaping = map[string]Shaping{
		"google":       {Connections: 5, MessagesPerConnection: 50},           // [K-ex]
		"yahoo":        {Connections: 10, MessagesPerConnection: 20},          // [K-ex]: 20 "provided by Yahoo directly"
		"microsoft":    {Connections: 5, MessagesPerConnection: 50},           // [K-ex] outlook
		"microsoft365": {Connections: 5, MessagesPerConnection: 50},           // [K-ex]
		"apple":        {Connections: 10, MessagesPerConnection: 5},           // [K-ex]
		"comcast":      {Connections: 25, MessagesPerConnection: 1000},        // [C]: "25 simultaneous connections per sending IP"; [K-ex]
		"cox":          {Connections: 10, MessagesPerConnection: 100},         // [S] quoting Cox's replies
		"orange":       {Connections: 2, MessagesPerConnection: 100},          // [K-ex]
		"gmx":          {Connections: 4, MessagesPerConnection: 20},           // [K-co]
		"yahoo-japan":  {Connections: 2, MessagesPerConnection: 20, Rate: 10}, // [K-co]
		"qq":           {Connections: 4, MessagesPerConnection: 8},            // [K-co]
		"netease":      {Connections: 4, MessagesPerConnection: 7},            // [K-co]
	}
)

// overlay returns s with the non-zero fields of o.
func (s Shaping) overlay(o Shaping) Shaping {
	if o.Connections > 0 {
		s.Connections = o.Connections
	}
	if o.MessagesPerConnection > 0 {
		s.MessagesPerConnection = o.MessagesPerConnection
	}
	if o.Rate > 0 {
		s.Rate = o.Rate
	}
	return s
}

// warmupConnections caps connections while a plan ramps: 1 until day 7, 2
// until day 14 (PROVIDERS.md §4d; a proposal, no source publishes one). A new
// IP opening many parallel sessions looks like a burst however low its cap.
func warmupConnections(day int) int {
	switch {
	case day <= 7:
		return 1
	case day <= 14:
		return 2
	}
	return 0
}
