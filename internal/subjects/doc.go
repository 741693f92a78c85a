// Package subjects is the only place where NATS subject, stream, consumer
// and KV bucket names are built and parsed.
//
// User-supplied names (namespaces, channel names, middleman keys, upstream
// names) are arbitrary byte strings. They reach a subject only through
// [Encode], an injective escape that yields a single subject token made of
// the characters [A-Za-z0-9_-]. A token therefore never contains a '.', '*',
// '>', whitespace or a control character, so no user name can change the
// shape or meaning of a subject, and two different names never share one.
// Names are at most [MaxNameLen] bytes and every subject built from them
// at most [MaxSubjectLen] bytes ([ErrTooLong] otherwise), so no input can
// build a subject that nats-server refuses (which would close the
// connection).
//
// The package imports only the standard library, so every binary can use it.
package subjects
