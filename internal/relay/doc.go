// Package relay is the HTTP relay's wire protocol over NATS, shared by the
// gateway's /relay ingress, `agent client` (both callers, [Client]) and
// `agent upstream` (the serving side, [Server]). The ingress is [Service]
// (ingress.go): plain net/http routes ANY /relay/{name}/{path...} that
// check the upstream's API key and hand the request to a Client. [Config]
// holds the relay.* keys and the protocol's timing. The package does not
// import echo, the gateway or the agent.
//
// # Roles and subjects
//
// The agents of upstream NAME run a nats micro service named
// subjects.RelayService(NAME) whose one endpoint listens on
// subjects.RelayRequest(NAME) in the queue group subjects.RelayQueue, so
// NATS picks one live agent per request and $SRV.PING/INFO/STATS discover
// them. Every other subject of an exchange lies under
// subjects.RelayInbox(NAME), which lets NATS permissions confine an agent
// to its upstreams: the caller's reply subject R and the agent's control
// subject C are subjects.RelayExchange subjects of a space each side holds
// one subscription to (subjects.RelayExchangeSpace).
//
// # One exchange
//
//  1. The caller takes a reply subject R no exchange in flight has (one
//     wildcard subscription per upstream carries them all; R of an
//     exchange that ended inline is reused, see call.stopReplies) and
//     publishes an "open" request to the endpoint with reply R and an
//     attempt value (Sb-Relay-Try) no other attempt of the caller has,
//     which every answer echoes. Its data is a text head (method, escaped
//     path, raw query, content length, headers) followed, for bodies of
//     known size up to InlineMax, by the whole body. No responders: the
//     caller polls until an agent appears or AgentWait passes (503
//     NO_AGENT).
//  2. The agent answers "ack" on R with its control subject C and, for a
//     streamed request body, the subject of its natsio receiver. Without an
//     ack within AckTimeout the caller asks again (NATS picks another agent
//     of the queue group). A busy agent answers "busy" and is asked again.
//  3. A streamed request body flows caller → agent over natsio, with
//     credit flow control. The agent calls the target meanwhile.
//  4. The agent answers "resp" on R: a JSON head (status, headers, content
//     length) and, for small bodies of known size, the body. Otherwise the
//     caller opens a natsio receiver and sends its subject in "pull" to C;
//     the agent connects a natsio sender, says "started" on R, and streams
//     the body as it reads it from the target (SSE arrives event by event).
//     Failures are "err" with a code (UPSTREAM_UNREACHABLE, BAD_REQUEST).
//  5. Until the response is started both sides send "ka" keep-alives every
//     Heartbeat (agent on R, caller on C); silence for PeerTimeout means the
//     agent is lost (502 AGENT_LOST) or, on the agent, that the caller is
//     gone (the target request is cancelled). Afterwards natsio's own
//     heartbeats detect a lost peer. A caller that gives up sends "cancel"
//     to C; the agent cancels the target request's context.
//
// The response timeout starts when the request body was fully delivered
// (at once for inline bodies), as with http.Transport's
// ResponseHeaderTimeout.
//
// # Trust
//
// The agent is the least trusted party: it runs on a remote network. The
// caller publishes only to subjects it derived itself or to subjects the
// agent handed over (its control subject C, its body receiver, the control
// and reply subjects of its stream hello) that subjects.CheckPeer accepts
// as literal subjects under subjects.RelayInbox(NAME), where the agent's
// own NATS permissions let it publish anyway. Anything else ends the
// exchange with 502 AGENT_LOST and counts in
// switchboard_relay_agent_violations_total{field}; so does a "started"
// before the caller's receiver accepted a hello, and a malformed response
// head (status outside 200–599, inline body longer than declared). Agent
// error text reaching the caller is cut to 512 bytes. Request paths are
// confined ([ConfinePath]) by the caller and again by the agent.
package relay
