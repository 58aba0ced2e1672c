package calls

import (
	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/otp"
)

// outcomes maps every call outcome of the script to the call status that the API shows. The two types
// stay separate because otp imports nothing of the call path; TestEveryOutcomeHasAStatus walks
// callflow.Outcomes, so an outcome added there without a status here fails the tests.
var outcomes = map[callflow.Outcome]otp.CallStatus{
	callflow.Delivered:     otp.CallDelivered,
	callflow.NoInput:       otp.CallNoInput,
	callflow.Busy:          otp.CallBusy,
	callflow.NoAnswer:      otp.CallNoAnswer,
	callflow.Rejected:      otp.CallRejected,
	callflow.InvalidNumber: otp.CallInvalidNumber,
	callflow.Unreachable:   otp.CallUnreachable,
	callflow.Abandoned:     otp.CallAbandoned,
	callflow.Failed:        otp.CallFailed,
	callflow.Canceled:      otp.CallCanceled,
}

// callStatus is the call status of outcome o; an unknown outcome (which the test above rules out) is
// failed.
func callStatus(o callflow.Outcome) otp.CallStatus {
	if s, ok := outcomes[o]; ok {
		return s
	}
	return otp.CallFailed
}

// stopCauses are the hangup causes of a call stopped because its verification ended, by the status it
// ended in.
var stopCauses = map[otp.Status]string{
	otp.StatusCanceled:    "canceled",
	otp.StatusExpired:     "expired",
	otp.StatusApproved:    "approved",
	otp.StatusMaxAttempts: "locked",
	otp.StatusFailed:      "failed",
}

// stopCause is the hangup cause of a call stopped because its verification ended in s.
func stopCause(s otp.Status) string {
	if c, ok := stopCauses[s]; ok {
		return c
	}
	return callflow.CauseCanceled
}
