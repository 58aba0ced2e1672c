package calls

import (
	"context"
	"log/slog"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/webhook"
)

func statusData(v *otp.Verification) map[string]any {
	return map[string]any{"verification_id": v.ID, "to": v.To, "status": v.Status, "attempts_left": v.AttemptsLeft()}
}

func callData(j dispatch.Job, e callflow.Event) map[string]any {
	return map[string]any{"verification_id": j.VerificationID, "call_id": j.CallID, "event": e}
}

// webhook queues an event for the verification's callback URL, if any.
func (c *Calls) webhook(v *otp.Verification, typ string, data any) {
	if v != nil {
		c.send(v.CallbackURL, typ, data, slog.String("verification_id", v.ID))
	}
}

// operatorWebhook sends an event about the deployment (not a verification) to Config.GuardWebhookURL.
func (c *Calls) operatorWebhook(typ string, data any) {
	c.send(c.cfg.GuardWebhookURL, typ, data)
}

// send queues an event of type typ for url, if there is a sender and a url; attrs name it in the log
// line of a failure.
func (c *Calls) send(url, typ string, data any, attrs ...slog.Attr) {
	if c.hooks == nil || url == "" {
		return
	}
	ev, err := webhook.NewEvent(typ, data, c.now().UTC())
	if err == nil {
		err = c.hooks.Send(url, ev)
	}
	if err != nil {
		attrs = append(attrs, slog.String("type", typ), slog.String("error", err.Error()))
		c.log.LogAttrs(context.Background(), slog.LevelWarn, "webhook not queued", attrs...)
	}
}
