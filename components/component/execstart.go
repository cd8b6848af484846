package component

import (
	"fmt"
	"sort"
	"strings"
)

// ExecStart renders a unit's ExecStart= line: the binary, then each argument on
// its own continuation line, every word quoted by ExecQuote. It is the one
// renderer of daemon flags in kubeforge's units, so an operator's extraArgs
// value means the same thing in every component.
func ExecStart(binary string, args []string) string {
	var b strings.Builder
	b.WriteString("ExecStart=" + ExecQuote(binary))
	for _, a := range args {
		b.WriteString(" \\\n  " + ExecQuote(a))
	}
	return b.String()
}

// ExecQuote makes one argument survive systemd's ExecStart= parsing unchanged:
// "%" starts a specifier and "$" a variable, so both are doubled, and an
// argument with blanks, quotes, backslashes or ";" is double-quoted with C-style
// escapes (the syntax systemd 219 already understands). A newline cannot be
// carried by a unit file at all; FlagArgs refuses it.
func ExecQuote(arg string) string {
	arg = strings.ReplaceAll(arg, "%", "%%")
	arg = strings.ReplaceAll(arg, "$", "$$")
	if arg != "" && !strings.ContainsAny(arg, " \t\"'\\;") {
		return arg
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(arg) + `"`
}

// FlagArgs turns name → value into "--name=value" arguments sorted by name,
// for ExecStart. what names the daemon in errors. A name must be a plain flag
// name; a value may hold anything ExecQuote can carry, which is everything but
// a newline.
func FlagArgs(what string, flags map[string]string) ([]string, error) {
	keys := make([]string, 0, len(flags))
	for k, v := range flags {
		if err := CheckFlag(what, k, v); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, "--"+k+"="+flags[k])
	}
	return out, nil
}

// CheckFlag refuses a flag a unit file cannot carry: a name that is not a plain
// flag name, or a value with a newline.
func CheckFlag(what, name, value string) error {
	if name == "" || strings.HasPrefix(name, "-") || strings.ContainsAny(name, " \t\r\n\"'\\=%$;") {
		return fmt.Errorf("%s flag name %q is not a plain flag name", what, name)
	}
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("%s flag --%s value %q has a line break, which a unit file cannot carry", what, name, value)
	}
	return nil
}
