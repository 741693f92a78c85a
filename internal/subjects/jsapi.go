package subjects

// JSMsgDelete is the JetStream API subject that deletes one message of a
// stream by its sequence.
func JSMsgDelete(stream string) string { return join("$JS", "API", "STREAM", "MSG", "DELETE", stream) }
