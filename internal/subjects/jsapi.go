package subjects

// JetStream API subjects that hot paths address with plain requests.

// JSMsgGet is the JetStream API subject that reads a stream message
// through the stream leader.
func JSMsgGet(stream string) string { return join("$JS", "API", "STREAM", "MSG", "GET", stream) }

// JSStreamPurge is the JetStream API subject that purges a stream (a
// filter in the request limits it to one subject).
func JSStreamPurge(stream string) string { return join("$JS", "API", "STREAM", "PURGE", stream) }

// JSMsgDelete is the JetStream API subject that deletes one message of a
// stream by its sequence.
func JSMsgDelete(stream string) string { return join("$JS", "API", "STREAM", "MSG", "DELETE", stream) }
