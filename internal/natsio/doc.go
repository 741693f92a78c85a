// Package natsio moves one byte stream of any size over core NATS with
// credit-based flow control, so bodies are never buffered whole and never
// limited by the server's max_payload.
//
// A [Receiver] owns a fresh inbox subject and hands it to the other side
// (for example inside a request/reply). A [Sender] opens the stream with a
// hello request to that subject — no responders means the receiver is gone —
// then publishes chunks of at most ChunkSize bytes. The receiver grants
// credit as an absolute byte offset ("you may send up to N bytes"), starting
// at Window and advancing as its reader consumes data, so at most Window
// bytes are ever in flight or queued. Both sides send heartbeats while
// idle; a side that hears nothing from its peer for PeerTimeout fails with
// [ErrPeerLost]. The stream ends with EOF (the receiver confirms it has read
// everything, which [Sender.Close] waits for) or with an error carried to
// the other side; a receiver closed before its reader read the end, even
// with every byte taken, cancels the stream.
//
// Every subject the other side hands over (the receiver subject a sender
// opens, the control and reply subjects of a hello) passes
// Options.CheckPeer before anything is published to it; a refused hello is
// not answered and fails the stream with [ErrForeignSubject], so a peer
// cannot make this side publish with its NATS rights where the peer could
// not.
//
// Wire headers (all messages): Sb-Seq (chunk number, data only), Sb-Ctl
// (the sender's control subject, on hello), Sb-Eof, Sb-Err (reason),
// Sb-Credit (absolute offset, control only), Sb-Done, Sb-Cancel.
package natsio
