// Package config loads the typed configuration of Switchboard's binaries
// from flags, environment, a YAML file and defaults, in that order of
// precedence, using a viper instance per load (never the global one).
//
// Every key is declared once in a [Key] table with its default and help
// line; the table produces the long flag (dots and underscores become
// dashes), optional short aliases, and the environment variable
// (PREFIX_ + upper-case key with '.' replaced by '_'). Unknown file keys and
// invalid values stop start-up with an error naming the key.
package config
