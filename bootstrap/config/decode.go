package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// InvalidError is a configuration that does not decode or does not validate. It
// carries every problem found, each naming its field path, so an operator fixes the
// file in one pass instead of one error per run.
type InvalidError struct {
	// File is the config file, empty when the data did not come from a file.
	File   string
	Errors field.ErrorList
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if len(e.Errors) == 1 {
		b.WriteString("invalid cluster configuration: ")
		b.WriteString(e.Errors[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, "invalid cluster configuration (%d problems):", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Decode reads a Cluster document strictly, fills in defaults and validates it.
// Every problem, of decoding or of validation, is in the returned error, one per
// line. Validation warnings are not returned; call Validate for them.
func Decode(data []byte) (*Cluster, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if _, err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads and decodes the config file at path. Errors start with the path.
func Load(path string) (*Cluster, error) {
	c, err := LoadUnvalidated(path)
	if err != nil {
		return nil, err
	}
	if _, err := c.Validate(); err != nil {
		return nil, withFile(path, err)
	}
	return c, nil
}

// LoadUnvalidated is Load without the validation step, for callers (like
// `config validate`) that want the warnings as well as the errors of Validate.
func LoadUnvalidated(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// os errors already start with "open <path>:".
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, withFile(path, err)
	}
	return c, nil
}

func withFile(path string, err error) error {
	var ie *InvalidError
	if errors.As(err, &ie) {
		cp := *ie
		cp.File = path
		return &cp
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Parse decodes a Cluster document strictly and fills in defaults, but does not
// validate it. The document must be a single YAML mapping with the supported
// apiVersion and kind; unknown fields (also ones differing only in case from a known
// field), duplicate keys and values of the wrong type are errors.
func Parse(data []byte) (*Cluster, error) {
	tree, err := yamlTree(data)
	if err != nil {
		return nil, err
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the configuration is a %s, not a YAML mapping with apiVersion, kind, metadata and spec",
			strings.Trim(jsonKind(tree), "<>"))
	}

	// Check the version first: field names of another version mean nothing here.
	var errs field.ErrorList
	errs = append(errs, checkTypeMeta(obj, "apiVersion", APIVersion)...)
	errs = append(errs, checkTypeMeta(obj, "kind", Kind)...)
	if len(errs) > 0 {
		return nil, &InvalidError{Errors: errs}
	}

	errs = normalize(obj, reflect.TypeFor[Cluster](), nil)
	if len(errs) > 0 {
		return nil, &InvalidError{Errors: errs}
	}

	// normalize has checked every key and type, so this decode cannot meet an unknown
	// field or a type mismatch; it is still strict so a gap in normalize shows up
	// as an error rather than a silently dropped setting.
	norm, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("re-encoding configuration: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(norm))
	dec.DisallowUnknownFields()
	c := &Cluster{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("decoding configuration: %w", err)
	}
	SetDefaults(c)
	return c, nil
}

// Marshal renders c as YAML, the form Decode reads. Fields come out in the order
// of the Go types (apiVersion, kind, metadata, spec; a host's name before its
// address) rather than sorted, so the output reads like a hand-written file.
func Marshal(c *Cluster) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	// JSON is YAML; decoding it into a MapSlice keeps the struct's field order.
	var ordered yamlv2.MapSlice
	if err := yamlv2.Unmarshal(buf.Bytes(), &ordered); err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	return yamlv2.Marshal(ordered)
}

// yamlTree turns the YAML document into the generic JSON tree (map[string]any,
// []any, string, json.Number, bool, nil).
func yamlTree(data []byte) (any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the configuration is empty")
	}
	// sigs.k8s.io/yaml reads only the first document of a stream; a second one would
	// be silently ignored, so count them first. The strict decoder also rejects
	// duplicate keys.
	d := yamlv2.NewDecoder(bytes.NewReader(data))
	d.SetStrict(true)
	docs := 0
	for {
		var v any
		err := d.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing YAML: %w", err)
		}
		if v != nil {
			docs++
		}
	}
	if docs == 0 {
		return nil, errors.New("the configuration is empty")
	}
	if docs > 1 {
		return nil, fmt.Errorf("the configuration holds %d YAML documents; expected exactly one Cluster document", docs)
	}
	// Find the one non-empty document: leading "---" or empty documents are fine.
	j, err := yaml.YAMLToJSONStrict(firstNonEmptyDoc(data))
	if err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	var tree any
	jd := json.NewDecoder(bytes.NewReader(j))
	jd.UseNumber()
	if err := jd.Decode(&tree); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	return tree, nil
}

// firstNonEmptyDoc returns the one non-null document of the stream in a form
// YAMLToJSON, which reads only the first document, sees: the input itself when that
// document comes first, else the document re-encoded on its own (after leading
// empty documents such as "---\n---\nkind: ...").
func firstNonEmptyDoc(data []byte) []byte {
	d := yamlv2.NewDecoder(bytes.NewReader(data))
	for idx := 0; ; idx++ {
		var v any
		if err := d.Decode(&v); err != nil {
			return data // cannot happen after yamlTree's first pass; let YAMLToJSON report
		}
		if v == nil {
			continue
		}
		if idx == 0 {
			return data
		}
		out, err := yamlv2.Marshal(v)
		if err != nil {
			return data
		}
		return out
	}
}

func checkTypeMeta(obj map[string]any, key, want string) field.ErrorList {
	p := field.NewPath(key)
	v, ok := obj[key]
	if !ok || v == nil || v == "" {
		return field.ErrorList{field.Required(p, fmt.Sprintf("must be %q", want))}
	}
	s, ok := v.(string)
	if !ok {
		return field.ErrorList{field.TypeInvalid(p, jsonKind(v), "must be a string")}
	}
	if s != want {
		return field.ErrorList{field.NotSupported(p, s, []string{want})}
	}
	return nil
}

// normalize walks the JSON tree v against Go type t, reports every unknown field
// and type mismatch under its path, and rewrites scalars that YAML typed differently
// from the field into the field's form: a number written for a string field
// ("autoCompactionRetention: 10000", "extraArgs: {v: 2}") becomes its text, and a
// boolean in an extraArgs map becomes "true"/"false". It returns the problems found.
func normalize(v any, t reflect.Type, p *field.Path) field.ErrorList {
	if v == nil {
		return nil // null leaves the field at its zero value, as an absent one would.
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs field.ErrorList
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return field.ErrorList{field.TypeInvalid(p, jsonKind(v), "must be a mapping")}
		}
		fields := jsonFields(t)
		keys := sortedKeys(obj)
		for _, k := range keys {
			sf, ok := fields[k]
			if !ok {
				errs = append(errs, field.Forbidden(p.Child(k), unknownFieldDetail(k, fields)))
				continue
			}
			if sf.Type.Kind() == reflect.String {
				str, e := scalarString(obj[k], false, p.Child(k))
				if e != nil {
					errs = append(errs, e)
					continue
				}
				obj[k] = str
				continue
			}
			errs = append(errs, normalize(obj[k], sf.Type, p.Child(k))...)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return field.ErrorList{field.TypeInvalid(p, jsonKind(v), "must be a list")}
		}
		for i := range arr {
			if t.Elem().Kind() == reflect.String {
				s, e := scalarString(arr[i], false, p.Index(i))
				if e != nil {
					errs = append(errs, e)
					continue
				}
				arr[i] = s
				continue
			}
			errs = append(errs, normalize(arr[i], t.Elem(), p.Index(i))...)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return field.ErrorList{field.TypeInvalid(p, jsonKind(v), "must be a mapping")}
		}
		for _, k := range sortedKeys(obj) {
			// Flags in extraArgs are often booleans ("allow-privileged: true");
			// take them as the text the flag wants.
			s, e := scalarString(obj[k], true, p.Key(k))
			if e != nil {
				errs = append(errs, e)
				continue
			}
			obj[k] = s
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return field.ErrorList{field.TypeInvalid(p, scalarForMessage(v), "must be true or false")}
		}
	case reflect.String:
		// Parents rewrite their string members in place; nothing left to do here.
		return nil
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			detail := "must be an integer"
			if s, isStr := v.(string); isStr {
				if _, err := json.Number(s).Int64(); err == nil {
					detail += "; remove the quotes"
				}
			}
			return field.ErrorList{field.TypeInvalid(p, scalarForMessage(v), detail)}
		}
		i, err := n.Int64()
		if err != nil {
			return field.ErrorList{field.TypeInvalid(p, n.String(), "must be an integer")}
		}
		if t.Kind() == reflect.Int && (i > math.MaxInt32 || i < math.MinInt32) {
			return field.ErrorList{field.Invalid(p, i, "out of range")}
		}
	default:
		return field.ErrorList{field.InternalError(p, fmt.Errorf("unhandled Go kind %s", t.Kind()))}
	}
	return errs
}

// scalarString turns a scalar into the string a string field holds.
func scalarString(v any, allowBool bool, p *field.Path) (string, *field.Error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		if allowBool {
			if x {
				return "true", nil
			}
			return "false", nil
		}
		return "", field.TypeInvalid(p, x, "must be a string (quote it)")
	case nil:
		return "", nil
	}
	return "", field.TypeInvalid(p, jsonKind(v), "must be a string")
}

// jsonFields maps the JSON names of t's fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = sf
	}
	return out
}

// unknownFieldDetail suggests the known field an unknown key most likely meant.
func unknownFieldDetail(key string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	// A close spelling (typo, wrong case) or an abbreviation ("kubeVersion" for
	// "kubernetesVersion") is most likely what was meant.
	best, bestD := "", math.MaxInt
	lk := strings.ToLower(key)
	for _, n := range names {
		ln := strings.ToLower(n)
		d := editDistance(ln, lk)
		near := d <= 2 || (len(lk) >= 4 && (isSubsequence(lk, ln) || isSubsequence(ln, lk)))
		if near && d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field (did you mean %q?)", best)
	}
	return "unknown field (known fields: " + strings.Join(names, ", ") + ")"
}

// isSubsequence reports whether the letters of a appear in b in order.
func isSubsequence(a, b string) bool {
	i := 0
	for j := 0; i < len(a) && j < len(b); j++ {
		if a[i] == b[j] {
			i++
		}
	}
	return i == len(a)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonKind names the YAML kind of a value for "must be a ..." messages, so the
// message does not dump a whole mapping.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "<mapping>"
	case []any:
		return "<list>"
	case string:
		return "<string>"
	case json.Number:
		return "<number>"
	case bool:
		return "<boolean>"
	case nil:
		return "<null>"
	}
	return fmt.Sprintf("<%T>", v)
}

func scalarForMessage(v any) any {
	switch x := v.(type) {
	case string, bool:
		return x
	}
	return jsonKind(v)
}
