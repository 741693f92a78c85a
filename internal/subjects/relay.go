package subjects

// Relay subjects. Everything that belongs to upstream NAME lives under
// sb.relay.<Encode(NAME)>:
//
//	sb.relay.<T>               open requests; the agents of NAME serve it in
//	                           the queue group [RelayQueue] (nats micro
//	                           endpoint)
//	sb.relay.<T>.in.<id>.<n>   private subject of one side of exchange n:
//	                           the caller's reply subject or the agent's
//	                           control subject ([RelayExchange]); <id> is
//	                           unique to the caller's or agent's side
//	sb.relay.<T>.in.<id>       a body stream's receiver (natsio)
//	sb.relay.<T>.in.cancel     a caller gives up before an agent accepted
//
// so NATS permissions can confine an agent to its upstreams: see
// [AgentPermissions].
const (
	relayToken   = "relay"
	relayInbox   = "in"
	relaySvcPref = "sb-relay-"
)

// RelayQueue is the queue group in which the agents of an upstream serve
// its open requests ([RelayRequest]), so NATS hands each one to a single
// agent.
const RelayQueue = "sb-relay"

// RelayRequest is the subject agents of upstream serve (queue group).
func RelayRequest(upstream string) (string, error) {
	tok, err := Encode(upstream)
	if err != nil {
		return "", err
	}
	return join(Prefix, relayToken, tok), nil
}

// RelayInbox is the prefix of every private subject of an exchange with
// upstream; callers and agents append "." and unique tokens. Agents also
// use it as their connection's inbox prefix.
func RelayInbox(upstream string) (string, error) {
	tok, err := Encode(upstream)
	if err != nil {
		return "", err
	}
	return join(Prefix, relayToken, tok, relayInbox), nil
}

// RelayExchangeSpace is the private subject space of one side of many
// exchanges with an upstream: "<inbox>.<id>", where inbox is the
// upstream's [RelayInbox] and id a valid token unique to that side (the
// random part of a NATS inbox). A caller has one per upstream for its
// reply subjects, an agent one for its control subjects; each exchange
// gets [RelayExchange] in it, and the side subscribes to
// [RelayExchangeAll] once.
func RelayExchangeSpace(inbox, id string) string { return join(inbox, id) }

// RelayExchange is the subject of exchange n (a valid token) in space, a
// [RelayExchangeSpace]: "<space>.<n>".
func RelayExchange(space, n string) string { return join(space, n) }

// RelayExchangeAll matches the subject of every exchange in space, a
// [RelayExchangeSpace]: "<space>.*".
func RelayExchangeAll(space string) string { return join(space, "*") }

// RelayCancel is where a caller that gives up before any agent accepted
// its request broadcasts that to every agent of upstream. It lies in the
// inbox space; inbox tokens are unique ids, never "cancel".
func RelayCancel(upstream string) (string, error) {
	in, err := RelayInbox(upstream)
	if err != nil {
		return "", err
	}
	return join(in, "cancel"), nil
}

// RelayService is the nats micro service name of upstream's agents, so
// $SRV.PING.<name>, $SRV.INFO.<name> and $SRV.STATS.<name> discover them.
// It matches micro's name syntax [A-Za-z0-9_-]+.
func RelayService(upstream string) (string, error) {
	tok, err := Encode(upstream)
	if err != nil {
		return "", err
	}
	return relaySvcPref + tok, nil
}

// RelayUpstreamFromService reverses [RelayService]; ok is false for any
// name RelayService cannot produce.
func RelayUpstreamFromService(service string) (string, bool) {
	if len(service) <= len(relaySvcPref) || service[:len(relaySvcPref)] != relaySvcPref {
		return "", false
	}
	name, err := Decode(service[len(relaySvcPref):])
	return name, err == nil
}

// AgentPermissions returns the NATS permissions of an agent user allowed to
// serve (and call) only the given upstreams: publish and subscribe on each
// upstream's subjects, subscribe to the micro discovery subjects of its own
// services, and answer requests it received (allow_responses: one reply per
// request, used for discovery replies and stream hellos sent from another
// side's connection inbox). Nothing else: no _INBOX.>, no other upstream.
// Names that cannot be encoded (empty) are skipped.
func AgentPermissions(upstreams []string) *Permissions {
	p := &Permissions{
		Publish:        []string{}, // non-nil: an empty allow-list allows nothing
		Subscribe:      []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS"},
		AllowResponses: true,
	}
	for _, u := range upstreams {
		req, err := RelayRequest(u)
		if err != nil {
			continue
		}
		svc, _ := RelayService(u)
		p.Publish = append(p.Publish, req, req+".>")
		p.Subscribe = append(p.Subscribe, req, req+".>", "$SRV.*."+svc, "$SRV.*."+svc+".*")
	}
	return p
}

// Permissions are allow-lists of subjects for one NATS user.
type Permissions struct {
	Publish   []string
	Subscribe []string
	// AllowResponses lets the user publish one reply to the reply subject
	// of each message it received, whatever the publish allow-list says.
	AllowResponses bool
}

// RelayCallerPermissions are the NATS permissions of a gateway's relay
// connection: publish and subscribe in the relay's subject space only, and
// subscribe to its own inbox for replies (stream hellos). With them, even a
// gateway bug that published where an agent pointed could reach nothing
// but relay subjects (defence in depth behind [CheckPeer]).
func RelayCallerPermissions() *Permissions {
	all := join(Prefix, relayToken, ">")
	return &Permissions{
		Publish:   []string{all},
		Subscribe: []string{all, "_INBOX.>"},
	}
}
