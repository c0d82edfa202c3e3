// Package mta is kiln's wire and engine: the submission server that accepts
// mail, the scheduler that decides what to send when, the delivery workers
// that speak SMTP to remote mail exchangers, and the admin HTTP API.
//
// A message's path: a submission session checks the client and the message,
// adds the headers kiln owes (Received, and Message-ID and Date when missing)
// and stores it durably (queue.Store.Enqueue) before answering 250. The
// scheduler (one goroutine that owns the messages in hand) splits each due
// message by recipient domain into jobs, routes each job to a destination
// (smarthost or MX set) and feeds the destination's delivery workers, each of
// which owns one outbound connection. A worker records every recipient's
// outcome in the queue before it takes its next job, so a recipient that got a
// 250 is never sent the message again.
package mta
