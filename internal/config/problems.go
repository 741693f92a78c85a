package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Invalid returns the error of an invalid value of key, in the one form
// every binary reports: `invalid value for key "KEY": WHY`.
func Invalid(key, format string, args ...any) error {
	return fmt.Errorf("invalid value for key %q: %s", key, fmt.Sprintf(format, args...))
}

// Join combines the validation errors of several config sections (each
// maybe an errors.Join of [Invalid] errors) into one error: "config: "
// and every message, sorted, joined by "; ". Nil errors are skipped; no
// error at all gives nil.
func Join(errs ...error) error {
	var msgs []string
	var flatten func(error)
	flatten = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				flatten(e)
			}
			return
		}
		msgs = append(msgs, strings.TrimPrefix(err.Error(), "config: "))
	}
	for _, err := range errs {
		flatten(err)
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	return errors.New("config: " + strings.Join(msgs, "; "))
}
