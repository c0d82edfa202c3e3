// Package queue is kiln's durable store for accepted mail: each message's
// envelope and per-recipient state, its body, a schedule index that finds the
// next due message without scanning, hold rules, and recovery at start.
//
// # Layout
//
// Envelopes live in badger (one shared database; this package owns the "q/"
// key prefix):
//
//	q/m/<id>              the Message record: 1 version byte, CRC-32C, JSON
//	q/s/<due><id>         schedule index: due time as 8 big-endian bytes (unix ns)
//	q/l/<id>              lease: the message is in the scheduler's hands
//	q/h/<id>              held: out of the schedule until released
//	q/x/<id>              quarantined record, with the reason it was set aside
//	q/r/<n>               hold rules
//
// Bodies are appended to segment files under <dir>/spool (see spool.go). They
// stay out of badger on purpose: badger maps its files into memory, so every
// queued body would count towards the process's resident memory, and a
// sequential append with one fdatasync per group commit is the cheapest durable
// write there is.
//
// # Durability
//
// Enqueue returns only after the body is fdatasynced and the envelope
// committed with badger's SyncWrites on (an msync of its write-ahead log).
// Writers share those syncs: a single committer goroutine takes every request
// that arrived while the previous batch was syncing, appends all their bodies
// with one write, syncs once, and commits all their envelopes in one
// transaction (group commit). Bodies are synced before envelopes are committed,
// so a committed envelope never points at bytes that could be lost.
//
// # States of a message
//
//	due (q/s)  --scheduler takes it-->  leased (q/s moved ahead, q/l)
//	leased     --attempt ends-->        due at its next retry, or gone when every
//	                                    recipient is done
//	due/leased --a hold rule matches--> held (q/h), until released
//
// A lease moves the message's schedule key ahead so the scheduler never finds
// it twice; a crash mid-attempt leaves the lease behind, and Open makes every
// leased message due at once, so it is retried rather than forgotten.
package queue
