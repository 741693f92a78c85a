package subjects

// Relay subjects. An upstream NAME is served on RelayRequest(NAME); agents
// answer on inbox subjects.
const relayToken = "relay"

// RelayRequest is the subject agents of upstream serve (queue group).
func RelayRequest(upstream string) (string, error) {
	tok, err := Encode(upstream)
	if err != nil {
		return "", err
	}
	return join(Prefix, relayToken, tok), nil
}

// AgentPermissions returns the NATS permissions of an agent user allowed to
// serve only the given upstreams: subscribe to their request subjects and
// to its own inboxes, publish replies to inboxes and micro discovery.
func AgentPermissions(upstreams []string) *Permissions {
	p := &Permissions{
		Publish:   []string{"_INBOX.>", "$SRV.>"},
		Subscribe: []string{"_INBOX.>", "$SRV.>"},
	}
	for _, u := range upstreams {
		if s, err := RelayRequest(u); err == nil {
			p.Subscribe = append(p.Subscribe, s, s+".>")
		}
	}
	return p
}

// Permissions are allow-lists of subjects for one NATS user.
type Permissions struct {
	Publish   []string
	Subscribe []string
}
