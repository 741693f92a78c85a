// Package relay is the HTTP relay's wire protocol over NATS, shared by the
// gateway's /relay ingress, `agent client` (both callers, [Client]) and
// `agent upstream` (the serving side, [Server]). It does not import echo,
// the gateway or the agent.
//
// # Roles and subjects
//
// The agents of upstream NAME run a nats micro service named
// subjects.RelayService(NAME) whose one endpoint listens on
// subjects.RelayRequest(NAME) in a queue group, so NATS picks one live
// agent per request and $SRV.PING/INFO/STATS discover them. Every other
// subject of an exchange lies under subjects.RelayInbox(NAME), which lets
// NATS permissions confine an agent to its upstreams.
//
// # One exchange
//
//  1. The caller subscribes to a fresh reply subject R and publishes an
//     "open" request to the endpoint with reply R. Its data is a JSON head
//     (method, escaped path, raw query, headers, content length) followed,
//     for bodies of known size up to InlineMax, by the whole body. No
//     responders: the caller polls until an agent appears or AgentWait
//     passes (503 NO_AGENT).
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
package relay
