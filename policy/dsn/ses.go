package dsn

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Amazon SES reports bounces, complaints and deliveries as JSON notifications
// (directly, or wrapped in an SNS envelope whose "Message" is the same JSON as
// a string). The fields used here are the documented ones: notificationType
// (or eventType), bounce.bouncedRecipients[].{emailAddress, action, status,
// diagnosticCode}, bounce.bounceType and bounceSubType, complaint.
// complainedRecipients[].emailAddress and complaintFeedbackType, and
// delivery.recipients with delivery.smtpResponse.

type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Type             string `json:"Type"`
	Message          string `json:"Message"`
	Bounce           *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		ReportingMTA      string `json:"reportingMTA"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint *struct {
		ComplaintFeedbackType string `json:"complaintFeedbackType"`
		ComplainedRecipients  []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
	Delivery *struct {
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
		ReportingMTA string   `json:"reportingMTA"`
	} `json:"delivery"`
}

type jsonResult struct {
	kind         Kind
	rcpts        []Recipient
	feedbackType string
}

// foldedLine undoes the line folding mail systems apply to long JSON lines:
// sendmail's "!" + newline + space, or a plain newline.
var foldedLine = strings.NewReplacer("!\r\n ", "", "!\n ", "", "\r\n", "", "\n", "")

func (p *parser) fromJSON() (jsonResult, bool) {
	texts := append([]string(nil), p.jsons...)
	if len(texts) == 0 && looksLikeJSON(p.msg.Text) {
		texts = append(texts, p.msg.Text)
	}
	for _, t := range texts {
		t = strings.TrimSpace(t)
		// A trailer after the JSON (SNS appends an unsubscribe notice).
		if i := strings.Index(t, "\n--\n"); i > 0 {
			t = t[:i]
		}
		var n sesNotification
		if err := json.Unmarshal([]byte(t), &n); err != nil {
			if err := json.Unmarshal([]byte(foldedLine.Replace(t)), &n); err != nil {
				if r, ok := sesLenient(t); ok {
					return r, true
				}
				continue
			}
		}
		if n.Message != "" && n.NotificationType == "" && n.EventType == "" {
			var inner sesNotification
			if json.Unmarshal([]byte(n.Message), &inner) == nil {
				n = inner
			}
		}
		if r, ok := n.result(); ok {
			return r, true
		}
	}
	return jsonResult{}, false
}

func (n sesNotification) result() (jsonResult, bool) {
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	var r jsonResult
	switch {
	case strings.EqualFold(typ, "bounce") && n.Bounce != nil:
		r.kind = KindDSN
		for _, b := range n.Bounce.BouncedRecipients {
			rc := Recipient{
				Address:   b.EmailAddress,
				Action:    strings.ToLower(b.Action),
				Status:    statusValue(b.Status),
				RemoteMTA: "",
			}
			rc.DiagnosticType, rc.Diagnostic = splitTyped(b.DiagnosticCode)
			if rc.Diagnostic == "" {
				// SES's own verdict, for recipients it never tried
				// (its suppression list) or could not say more about.
				rc.Diagnostic = "Amazon SES " + n.Bounce.BounceType + " bounce: " + n.Bounce.BounceSubType
			}
			rc.Context = "Amazon SES " + n.Bounce.BounceType + " bounce: " + n.Bounce.BounceSubType
			if rc.Action == "" {
				rc.Action = "failed"
				if strings.EqualFold(n.Bounce.BounceType, "Transient") {
					rc.Action = "delayed"
				}
			}
			r.rcpts = append(r.rcpts, rc)
		}
	case strings.EqualFold(typ, "complaint") && n.Complaint != nil:
		r.kind = KindARF
		r.feedbackType = strings.ToLower(n.Complaint.ComplaintFeedbackType)
		if r.feedbackType == "" {
			r.feedbackType = "abuse"
		}
		for _, c := range n.Complaint.ComplainedRecipients {
			r.rcpts = append(r.rcpts, Recipient{Address: c.EmailAddress, Action: "delivered", FeedbackType: r.feedbackType, Diagnostic: "Amazon SES complaint: " + r.feedbackType})
		}
	case strings.EqualFold(typ, "delivery") && n.Delivery != nil:
		r.kind = KindDSN
		for _, a := range n.Delivery.Recipients {
			r.rcpts = append(r.rcpts, Recipient{Address: a, Action: "delivered", Diagnostic: n.Delivery.SMTPResponse, RemoteMTA: n.Delivery.ReportingMTA})
		}
	}
	return r, len(r.rcpts) > 0
}

var (
	sesType  = regexp.MustCompile(`"(?:notificationType|eventType)"\s*:\s*"(\w+)"`)
	sesRcpt  = regexp.MustCompile(`"emailAddress"\s*:\s*"([^"]+)"`)
	sesField = regexp.MustCompile(`"(status|diagnosticCode|action)"\s*:\s*"([^"]*)"`)
)

// sesLenient reads the fields that matter from a notification too mangled
// for a JSON decoder (a truncated report).
func sesLenient(t string) (jsonResult, bool) {
	m := sesType.FindStringSubmatch(t)
	if m == nil {
		return jsonResult{}, false
	}
	var r jsonResult
	r.kind = KindDSN
	action := "failed"
	if strings.EqualFold(m[1], "complaint") {
		r.kind, r.feedbackType, action = KindARF, "abuse", "delivered"
	}
	for _, a := range sesRcpt.FindAllStringSubmatch(t, -1) {
		rc := Recipient{Address: a[1], Action: action, FeedbackType: r.feedbackType}
		for _, f := range sesField.FindAllStringSubmatch(t, -1) {
			switch f[1] {
			case "status":
				rc.Status = statusValue(f[2])
			case "diagnosticCode":
				rc.DiagnosticType, rc.Diagnostic = splitTyped(f[2])
			}
		}
		r.rcpts = append(r.rcpts, rc)
	}
	return r, len(r.rcpts) > 0
}
