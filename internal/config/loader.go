package config

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// ErrHelp is returned by [Loader.Load] when -h or --help was given; the
// usage text has already been written.
var ErrHelp = pflag.ErrHelp

// Key declares one configuration key.
type Key struct {
	// Name is the dotted file key, e.g. "megaphone.write_wait".
	Name string
	// Default is the value when nothing sets the key. Its type decides the
	// flag type: string, int, bool, time.Duration, ByteSize, []string,
	// map[string]string. Keys of any other type are file-only.
	Default any
	// Usage is the one-line help text.
	Usage string
	// Aliases are extra flag names for the key (without dashes).
	Aliases []string
}

// FlagName is the long flag of a key: dots and underscores become dashes.
func (k Key) FlagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(k.Name)
}

// EnvName is the environment variable of a key under prefix.
func (k Key) EnvName(prefix string) string {
	return prefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(k.Name))
}

// FileOnly reports whether the key can be set only in the config file (a
// type no flag or environment variable can carry).
func (k Key) FileOnly() bool {
	switch k.Default.(type) {
	case string, int, bool, time.Duration, ByteSize, []string, map[string]string:
		return false
	}
	return true
}

// Loader loads one binary's configuration.
type Loader struct {
	// Name is the program name used in usage text.
	Name string
	// EnvPrefix is the environment prefix without the trailing '_'.
	EnvPrefix string
	// Keys is the full key table.
	Keys []Key
	// Output receives usage text; nil means os.Stderr.
	Output io.Writer
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// FlagSet builds the flag set for the key table, plus --config.
func (l *Loader) FlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet(l.Name, pflag.ContinueOnError)
	fs.SortFlags = true
	fs.String("config", "", "path of a YAML config file")
	for _, k := range l.Keys {
		if k.FileOnly() {
			continue
		}
		addFlag(fs, k)
	}
	return fs
}

func addFlag(fs *pflag.FlagSet, k Key) {
	name := k.FlagName()
	switch d := k.Default.(type) {
	case string:
		fs.String(name, d, k.Usage)
	case int:
		fs.Int(name, d, k.Usage)
	case bool:
		fs.Bool(name, d, k.Usage)
	case time.Duration:
		fs.Duration(name, d, k.Usage)
	case ByteSize:
		v := d
		fs.Var(&v, name, k.Usage)
	case []string:
		fs.StringSlice(name, d, k.Usage)
	case map[string]string:
		fs.StringToString(name, d, k.Usage)
	}
	main := fs.Lookup(name)
	for _, a := range k.Aliases {
		if fs.Lookup(a) != nil {
			continue
		}
		fs.AddFlag(&pflag.Flag{Name: a, Usage: "alias of --" + name, Value: main.Value, DefValue: main.DefValue, NoOptDefVal: main.NoOptDefVal})
	}
}

// Load parses args (without the program name) and fills out, a pointer to
// the binary's config struct tagged with mapstructure names. It returns the
// positional arguments left after the flags.
func (l *Loader) Load(args []string, out any) ([]string, error) {
	fs := l.FlagSet()
	if l.Output != nil {
		fs.SetOutput(l.Output)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	v := viper.New()
	for _, k := range l.Keys {
		v.SetDefault(k.Name, k.Default)
	}
	if err := l.readFile(fs, v); err != nil {
		return nil, err
	}
	if err := l.readEnv(v); err != nil {
		return nil, err
	}
	if err := l.readFlags(fs, v); err != nil {
		return nil, err
	}
	if err := l.decode(v, out); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

func (l *Loader) key(name string) (Key, bool) {
	for _, k := range l.Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// readFile loads --config, rejecting unknown keys. Map-valued keys are read
// from the raw YAML so their (case-sensitive) entry names survive.
func (l *Loader) readFile(fs *pflag.FlagSet, v *viper.Viper) error {
	path, _ := fs.GetString("config")
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	flat := map[string]any{}
	if err := l.flatten("", doc, flat); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	for name, val := range flat {
		v.Set(name, val)
	}
	return nil
}

func (l *Loader) flatten(prefix string, m map[string]any, out map[string]any) error {
	for name, val := range m {
		full := name
		if prefix != "" {
			full = prefix + "." + name
		}
		if k, ok := l.key(full); ok {
			if _, isMap := k.Default.(map[string]string); isMap {
				mm, err := stringMap(val)
				if err != nil {
					return fmt.Errorf("key %q: %w", full, err)
				}
				out[full] = mm
				continue
			}
			out[full] = val
			continue
		}
		sub, ok := val.(map[string]any)
		if !ok || !l.hasPrefix(full+".") {
			return fmt.Errorf("unknown key %q", full)
		}
		if err := l.flatten(full, sub, out); err != nil {
			return err
		}
	}
	return nil
}

func (l *Loader) hasPrefix(p string) bool {
	for _, k := range l.Keys {
		if strings.HasPrefix(k.Name, p) {
			return true
		}
	}
	return false
}

func stringMap(val any) (map[string]string, error) {
	if val == nil {
		return map[string]string{}, nil
	}
	m, ok := val.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a mapping of names to strings")
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("entry %q: want a string", k)
		}
		out[k] = s
	}
	return out, nil
}

func (l *Loader) readEnv(v *viper.Viper) error {
	getenv := l.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, k := range l.Keys {
		if k.FileOnly() {
			continue
		}
		s := getenv(k.EnvName(l.EnvPrefix))
		if s == "" {
			continue
		}
		if _, isMap := k.Default.(map[string]string); isMap {
			m, err := parsePairs(s)
			if err != nil {
				return fmt.Errorf("config: invalid value for %s (key %q): %w", k.EnvName(l.EnvPrefix), k.Name, err)
			}
			v.Set(k.Name, m)
			continue
		}
		v.Set(k.Name, s)
	}
	return nil
}

func parsePairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, val, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("entry %q: want NAME=VALUE", p)
		}
		out[name] = val
	}
	return out, nil
}

func (l *Loader) readFlags(fs *pflag.FlagSet, v *viper.Viper) error {
	for _, k := range l.Keys {
		if k.FileOnly() {
			continue
		}
		name := k.FlagName()
		changed := fs.Changed(name)
		for _, a := range k.Aliases {
			changed = changed || fs.Changed(a)
		}
		if !changed {
			continue
		}
		var (
			val any
			err error
		)
		switch k.Default.(type) {
		case string:
			val, err = fs.GetString(name)
		case int:
			val, err = fs.GetInt(name)
		case bool:
			val, err = fs.GetBool(name)
		case time.Duration:
			val, err = fs.GetDuration(name)
		case ByteSize:
			val = *(fs.Lookup(name).Value.(*ByteSize))
		case []string:
			val, err = fs.GetStringSlice(name)
		case map[string]string:
			val, err = fs.GetStringToString(name)
		}
		if err != nil {
			return fmt.Errorf("config: flag --%s (key %q): %w", name, k.Name, err)
		}
		v.Set(k.Name, val)
	}
	return nil
}

// decode decodes key by key so that an error names the key at fault.
func (l *Loader) decode(v *viper.Viper, out any) error {
	keys := make([]string, 0, len(l.Keys))
	for _, k := range l.Keys {
		keys = append(keys, k.Name)
	}
	sort.Strings(keys)
	for _, name := range keys {
		single := map[string]any{}
		setPath(single, strings.Split(name, "."), v.Get(name))
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				byteSizeHook,
				mapstructure.StringToTimeDurationHookFunc(),
				trimmedSliceHook,
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
			Result:           out,
		})
		if err != nil {
			return err
		}
		if err := dec.Decode(single); err != nil {
			return fmt.Errorf("config: invalid value for key %q: %s", name, oneLine(err))
		}
	}
	return nil
}

func setPath(m map[string]any, path []string, val any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = val
}

func oneLine(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):")
	msg = strings.ReplaceAll(msg, "\n", " ")
	return strings.Join(strings.Fields(msg), " ")
}

var byteSizeType = reflect.TypeOf(ByteSize(0))

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		return ParseByteSize(d)
	case int:
		return ByteSize(d), nil
	}
	return data, nil
}

// trimmedSliceHook splits comma-separated strings into lists and drops
// blank entries, so "a, b," and ["a","b"] decode alike.
func trimmedSliceHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	var parts []string
	switch d := data.(type) {
	case string:
		parts = strings.Split(d, ",")
	case []string:
		parts = d
	default:
		return data, nil
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}
