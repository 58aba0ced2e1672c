package calls

import (
	"encoding/json"
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
	if c.hooks == nil || v == nil || v.CallbackURL == "" {
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		return
	}
	ev := webhook.Event{ID: webhook.NewEventID(), Type: typ, CreatedAt: c.now().UTC(), Data: b}
	if err := c.hooks.Send(v.CallbackURL, ev); err != nil {
		c.log.Warn("webhook not queued", slog.String("verification_id", v.ID), slog.String("type", typ),
			slog.String("error", err.Error()))
	}
}

// operatorWebhook sends an event about the deployment (not a verification) to Config.GuardWebhookURL.
func (c *Calls) operatorWebhook(typ string, data any) {
	if c.hooks == nil || c.cfg.GuardWebhookURL == "" {
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		return
	}
	ev := webhook.Event{ID: webhook.NewEventID(), Type: typ, CreatedAt: c.now().UTC(), Data: b}
	if err := c.hooks.Send(c.cfg.GuardWebhookURL, ev); err != nil {
		c.log.Warn("webhook not queued", slog.String("type", typ), slog.String("error", err.Error()))
	}
}
