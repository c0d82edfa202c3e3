package policy

import "testing"

// benchReplies are typical replies: a hard bounce, a provider block, a rate
// limit, a mailbox-full deferral, and one no rule knows (the worst case: every
// rule is tried).
var benchReplies = []Reply{
	ParseReply("RCPT", "550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in virtual mailbox table"),
	ParseReply("DATA", "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp"),
	ParseReply("MAIL", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1"),
	ParseReply("RCPT", "452 4.2.2 The email account that you tried to reach is over quota. - gsmtp"),
	ParseReply("DATA", "554 5.0.0 Something entirely unexpected happened here"),
}

func BenchmarkClassify(b *testing.B) {
	c := DefaultClassifier()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Classify(benchReplies[i%len(benchReplies)])
	}
}

func BenchmarkClassifyUnknown(b *testing.B) {
	c := DefaultClassifier()
	r := benchReplies[len(benchReplies)-1]
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(r)
	}
}
