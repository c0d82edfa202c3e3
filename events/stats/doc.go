// Package stats counts kiln's events over time for charts: how many were
// delivered, deferred and bounced each minute, broken down by reason, by
// destination site (provider or MX set), by account and by egress. It also
// keeps the history of each warm-up's daily cap against what was sent, which
// the warm-up controller itself only knows for today.
//
// # Resolution
//
// Every event counts twice: in its minute and in its hour. Minutes are kept for
// MinuteKeep (default 48 hours), hours for HourKeep (default 30 days). A query
// is answered from minutes when its range lies within the minute retention, and
// from hours otherwise; points are summed to the step asked for.
//
// # Cost
//
// Handle is on the emitting goroutine, so it does only what cannot wait: under
// one mutex, it adds one to at most five series (the type's total, and the
// type by reason, by site, by account and by egress when the event names
// them), each in its minute and in its hour: about 200 ns an event, with no
// allocation once the series exist.
// A series is a ring of chunks: an hour of minutes or a day of hours, each
// tagged with the hour or day it holds, allocated when first written. A chunk
// whose tag is stale reads as zero and is reset when next written, so nothing
// has to roll the rings over on a timer. A series unused for longer than both
// retentions is forgotten.
//
// Sites and accounts are open-ended, so each dimension keeps at most MaxValues
// distinct values; events with further values are counted under Other. Memory
// is bounded by types x (1 + values of every dimension) x (MinuteKeep/1h x
// 256 B + HourKeep/24h x 112 B): some 15 KB for a series written every hour.
//
// # Persistence
//
// The package owns the "stats/" prefix of kiln's badger database:
//
//	stats/m/<hour><series>         60 counts, one a minute, as uvarints
//	stats/h/<day><series>          24 counts, one an hour, as uvarints
//	stats/w/<egress>\x00<site>     JSON list of {date, cap, sent, provider}
//
// <hour> and <day> are 8 big-endian bytes counted from the Unix epoch, and
// <series> is the event type, a NUL, the dimension letter and the value. Every
// FlushEvery (default one minute) the chunks changed since the last flush are
// written in one transaction, with the deletions of chunks that left the
// retention; New reads them back. Counts are absolute, so a crash loses at most
// the last interval and never counts anything twice. Like the event store,
// statistics are best-effort: the event log remains the full record.
//
// # Warm-up history
//
// With Options.Warmup set, each flush also samples the controller's Status and
// records, for every (egress, site), today's cap and how many were sent,
// replacing the earlier sample of the same day, so a day's record may miss
// what was sent in its last flush interval. The controller counts by its own
// local day, so the history uses its dates. DaysKeep days (default 60) are kept.
package stats
