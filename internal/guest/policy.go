package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// maxPolicy bounds the size of a policy document.
const maxPolicy = 1 << 20

// policyState is the policy the host set last.
//
// The agent only stores the policy for now: it is not enforced. Enforcing
// it (checking each request against it before the handler runs) comes
// later, in the interceptor; until then GetMetrics and the log report
// which policy is loaded, by its SHA-256.
type policyState struct {
	text string
	sum  string
	set  time.Time
}

// setPolicy replaces the policy.
func (s *miscState) setPolicy(a *Agent, policy string) error {
	if len(policy) > maxPolicy {
		return invalid("policy", "%d bytes is more than the %d allowed", len(policy), maxPolicy)
	}
	h := sha256.Sum256([]byte(policy))
	s.policyMu.Lock()
	s.policy = policyState{text: policy, sum: hex.EncodeToString(h[:]), set: time.Now()}
	s.policyMu.Unlock()
	a.log.Info("policy set (not enforced yet)", "sha256", hex.EncodeToString(h[:]), "bytes", len(policy))
	return nil
}

// currentPolicy returns the policy's SHA-256 and size, or ok false when
// none was set.
func (s *miscState) currentPolicy() (sum string, size int, ok bool) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	return s.policy.sum, len(s.policy.text), s.policy.sum != ""
}
