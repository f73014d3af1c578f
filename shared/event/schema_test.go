package event

import (
	"bytes"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/vmihailenco/msgpack/v5"
)

var update = flag.Bool("update", false, "rewrite ../../schemas/fixtures from the Go values in fixtures_test.go")

const (
	schemasDir  = "../../schemas"
	fixturesDir = "../../schemas/fixtures"
)

// messageTypes maps every wire message type of types.go to its schema name.
// A new message type must be added here, with a schema file and fixtures.
func messageTypes() map[string]string {
	return map[string]string{
		"ProbeResult":  SchemaProbeResult,
		"Transition":   SchemaTransition,
		"ActionResult": SchemaActionResult,
		"AuditRecord":  SchemaAudit,
		"Target":       SchemaTarget,
		"Member":       SchemaMember,
	}
}

// schemaNames lists the schema names in a fixed order.
func schemaNames() []string {
	return []string{SchemaProbeResult, SchemaTransition, SchemaActionResult, SchemaAudit, SchemaTarget, SchemaMember}
}

func states() []string { return []string{string(Unknown), string(Up), string(Down)} }
func kinds() []string  { return []string{string(KindBackend), string(KindVS), string(KindVA)} }

func probeReasons() []string {
	return []string{
		string(ReasonNone), string(ReasonL4OK), string(ReasonL4TOUT), string(ReasonL4CON), string(ReasonL4RSP),
		string(ReasonL6OK), string(ReasonL6TOUT), string(ReasonL6RSP), string(ReasonL7OK), string(ReasonL7STS),
		string(ReasonL7RSP), string(ReasonL7TOUT), string(ReasonICMPOK), string(ReasonICMPTO), string(ReasonICMPUNR),
		string(ReasonSOCKERR), string(ReasonPROCERR),
	}
}

func transitionReasons() []string {
	return []string{
		string(ReasonStale), string(ReasonQuorum), string(ReasonAggr), string(ReasonPaused), string(ReasonResumed),
		string(ReasonConfig), string(ReasonRemoved), string(ReasonGuard), string(ReasonRestored),
	}
}

// goSource is what the tests read from the package's own source: struct
// and field comments, the message types and the constants by type.
type goSource struct {
	typeDoc  map[string]string            // struct name -> doc comment
	fieldDoc map[string]map[string]string // struct name -> field name -> comment
	messages []string                     // exported structs with a "v" field
	consts   map[string][]string          // type name -> values of its constants
	// schemaConsts are the values of the (untyped) Schema* constants.
	schemaConsts []string
}

func parseSource(t *testing.T) goSource {
	t.Helper()
	src := goSource{typeDoc: map[string]string{}, fieldDoc: map[string]map[string]string{}, consts: map[string][]string{}}
	fset := token.NewFileSet()
	for _, file := range []string{"types.go", "event.go"} {
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, spec := range gd.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					st, ok := s.Type.(*ast.StructType)
					if !ok {
						continue
					}
					src.typeDoc[s.Name.Name] = oneLine(gd.Doc.Text() + s.Doc.Text())
					fields := map[string]string{}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							fields[n.Name] = oneLine(fl.Doc.Text() + fl.Comment.Text())
						}
						if fl.Tag != nil && strings.Contains(fl.Tag.Value, `msgpack:"v"`) && s.Name.IsExported() {
							src.messages = append(src.messages, s.Name.Name)
						}
					}
					src.fieldDoc[s.Name.Name] = fields
				case *ast.ValueSpec:
					if gd.Tok != token.CONST {
						continue
					}
					for i, v := range s.Values {
						lit, ok := v.(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue
						}
						val, _ := strconv.Unquote(lit.Value)
						if id, ok := s.Type.(*ast.Ident); ok {
							src.consts[id.Name] = append(src.consts[id.Name], val)
						} else if strings.HasPrefix(s.Names[i].Name, "Schema") {
							src.schemaConsts = append(src.schemaConsts, val)
						}
					}
				}
			}
		}
	}
	return src
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestEveryMessageHasSchema(t *testing.T) {
	src := parseSource(t)
	types := messageTypes()
	for _, name := range src.messages {
		if _, ok := types[name]; !ok {
			t.Errorf("message type %s in types.go has no entry in messageTypes (and so no schema)", name)
		}
	}
	for name, schema := range types {
		t.Run(strings.ReplaceAll(schema, ".", "_"), func(t *testing.T) {
			if !slices.Contains(src.messages, name) {
				t.Errorf("messageTypes lists %s, which is not a message type in types.go", name)
			}
			if _, err := os.Stat(filepath.Join(schemasDir, schema+".json")); err != nil {
				t.Errorf("no schema file for %s: %v", name, err)
			}
			v, err := SchemaFor(schema)
			if err != nil || reflect.TypeOf(v).Elem().Name() != name {
				t.Errorf("SchemaFor(%q) = %T, %v; want *%s", schema, v, err, name)
			}
		})
	}
	var inTypes []string
	for _, s := range types {
		inTypes = append(inTypes, s)
	}
	if got, want := sortedCopy(src.schemaConsts), sortedCopy(schemaNames()); !slices.Equal(got, want) || !slices.Equal(sortedCopy(inTypes), want) {
		t.Errorf("Schema* constants %v, schemaNames %v, messageTypes %v: keep them in step", got, want, sortedCopy(inTypes))
	}
	files, _ := filepath.Glob(filepath.Join(schemasDir, "*.json"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !slices.Contains(src.schemaConsts, name) {
			t.Errorf("schema file %s belongs to no Schema* constant", f)
		}
	}
}

func TestConstantListsComplete(t *testing.T) {
	src := parseSource(t)
	tests := []struct {
		typ  string
		want []string
	}{
		{"State", states()},
		{"Kind", kinds()},
		{"Reason", append(probeReasons(), transitionReasons()...)},
	}
	for _, tt := range tests {
		t.Run(strings.ToLower(tt.typ), func(t *testing.T) {
			if got, want := sortedCopy(src.consts[tt.typ]), sortedCopy(tt.want); !slices.Equal(got, want) {
				t.Errorf("%s constants in the source %v, the test's list %v: update the list and the schemas' enums", tt.typ, got, want)
			}
		})
	}
}

func loadSchemaDoc(t *testing.T, schema string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemasDir, schema+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s.json: %v", schema, err)
	}
	return doc
}

func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	out := map[string]*jsonschema.Schema{}
	for _, name := range schemaNames() {
		path, err := filepath.Abs(filepath.Join(schemasDir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile(path)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		out[name] = sch
	}
	return out
}

// TestSchemasMatchGoTypes walks each schema beside its Go type: the same
// keys, required = the keys without omitempty, matching JSON types and
// enums, a description on everything that contains the Go comment.
func TestSchemasMatchGoTypes(t *testing.T) {
	src := parseSource(t)
	compileSchemas(t) // valid draft 2020-12 documents
	for name, schema := range messageTypes() {
		t.Run(strings.ReplaceAll(schema, ".", "_"), func(t *testing.T) {
			doc := loadSchemaDoc(t, schema)
			if got := doc["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %v, want draft 2020-12", got)
			}
			if got, want := doc["$id"], "https://github.com/healthmesh/healthmesh/schemas/"+schema+".json"; got != want {
				t.Errorf("$id = %v, want %s", got, want)
			}
			v, _ := SchemaFor(schema)
			w := schemaWalker{t: t, root: doc, src: src, used: map[string]bool{}}
			w.object(schema, doc, reflect.TypeOf(v).Elem())
			defs, _ := doc["$defs"].(map[string]any)
			for def := range defs {
				if !w.used[def] {
					t.Errorf("$defs/%s is not used by %s", def, name)
				}
			}
		})
	}
}

type schemaWalker struct {
	t    *testing.T
	root map[string]any
	src  goSource
	used map[string]bool
}

func (w schemaWalker) object(path string, node map[string]any, typ reflect.Type) {
	t := w.t
	if node["type"] != "object" || node["additionalProperties"] != true {
		t.Errorf("%s: want type object with additionalProperties true (forward compatible), got type %v, additionalProperties %v",
			path, node["type"], node["additionalProperties"])
	}
	if node["title"] != typ.Name() {
		t.Errorf("%s: title %v, want %s", path, node["title"], typ.Name())
	}
	w.description(path, node, w.src.typeDoc[typ.Name()])
	props, _ := node["properties"].(map[string]any)
	var required []string
	seen := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := strings.Split(f.Tag.Get("msgpack"), ",")
		key := tag[0]
		seen[key] = true
		if !slices.Contains(tag[1:], "omitempty") {
			required = append(required, key)
		}
		p, ok := props[key].(map[string]any)
		if !ok {
			t.Errorf("%s: no property %q for field %s.%s", path, key, typ.Name(), f.Name)
			continue
		}
		w.description(path+"."+key, p, w.src.fieldDoc[typ.Name()][f.Name])
		w.value(path+"."+key, p, f.Type)
	}
	for key := range props {
		if !seen[key] {
			t.Errorf("%s: property %q has no field in %s", path, key, typ.Name())
		}
	}
	var got []string
	req, _ := node["required"].([]any)
	for _, r := range req {
		got = append(got, r.(string))
	}
	if !slices.Equal(sortedCopy(got), sortedCopy(required)) {
		t.Errorf("%s: required %v, want the keys without omitempty %v", path, got, required)
	}
}

func (w schemaWalker) description(path string, node map[string]any, goDoc string) {
	d, _ := node["description"].(string)
	if d == "" {
		w.t.Errorf("%s: no description", path)
		return
	}
	if goDoc != "" && !strings.Contains(oneLine(d), goDoc) {
		w.t.Errorf("%s: description %q does not contain the Go comment %q", path, d, goDoc)
	}
}

func (w schemaWalker) value(path string, p map[string]any, typ reflect.Type) {
	t := w.t
	wantType := func(jt string) {
		if p["type"] != jt {
			t.Errorf("%s: type %v, want %s (Go %s)", path, p["type"], jt, typ)
		}
	}
	wantEnum := func(sets ...[]string) {
		var got []string
		for _, e := range p["enum"].([]any) {
			got = append(got, e.(string))
		}
		for _, s := range sets {
			if slices.Equal(sortedCopy(got), sortedCopy(s)) {
				return
			}
		}
		t.Errorf("%s: enum %v, want one of %v", path, got, sets)
	}
	wantRange := func(min, max float64) {
		if p["minimum"] != min || (max != 0 && p["maximum"] != max) {
			t.Errorf("%s: range [%v, %v], want [%v, %v] (Go %s)", path, p["minimum"], p["maximum"], min, max, typ)
		}
	}
	switch typ {
	case reflect.TypeFor[State]():
		wantType("string")
		wantEnum(states())
		return
	case reflect.TypeFor[Kind]():
		wantType("string")
		wantEnum(kinds())
		return
	case reflect.TypeFor[Reason]():
		wantType("string")
		wantEnum(probeReasons(), append(probeReasons(), transitionReasons()...))
		return
	}
	switch typ.Kind() {
	case reflect.String:
		wantType("string")
	case reflect.Bool:
		wantType("boolean")
	case reflect.Int, reflect.Int64:
		wantType("integer")
	case reflect.Uint16:
		wantType("integer")
		wantRange(0, 65535)
	case reflect.Uint64:
		wantType("integer")
		wantRange(0, 0)
	case reflect.Float64:
		wantType("number")
	case reflect.Map:
		wantType("object")
		if ap, _ := p["additionalProperties"].(map[string]any); typ.Key().Kind() != reflect.String ||
			typ.Elem().Kind() != reflect.String || ap["type"] != "string" {
			t.Errorf("%s: want an object of strings (Go %s), got additionalProperties %v", path, typ, p["additionalProperties"])
		}
	case reflect.Slice:
		wantType("array")
		items, _ := p["items"].(map[string]any)
		w.value(path+"[]", items, typ.Elem())
	case reflect.Pointer:
		w.value(path, p, typ.Elem())
	case reflect.Struct:
		ref, _ := p["$ref"].(string)
		if want := "#/$defs/" + typ.Name(); ref != want {
			t.Errorf("%s: $ref %q, want %q", path, ref, want)
			return
		}
		defs, _ := w.root["$defs"].(map[string]any)
		def, ok := defs[typ.Name()].(map[string]any)
		if !ok {
			t.Errorf("%s: no $defs/%s", path, typ.Name())
			return
		}
		if !w.used[typ.Name()] {
			w.used[typ.Name()] = true
			w.object("$defs/"+typ.Name(), def, typ)
		}
	default:
		t.Errorf("%s: Go type %s has no schema mapping in this test", path, typ)
	}
}

// encodeFixture is the fixtures' encoding: event.Marshal's, with map keys
// sorted so that regenerating gives the same bytes.
func encodeFixture(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fixtureBytes returns a fixture's msgpack encoding and its JSON form.
func fixtureBytes(t *testing.T, f fixture) (msg, js []byte) {
	t.Helper()
	msg, err := encodeFixture(f.msg)
	if err != nil {
		t.Fatal(err)
	}
	js, err = ToJSON(msg)
	if err != nil {
		t.Fatal(err)
	}
	return msg, js
}

func writeFixtures(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(fixturesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(fixturesDir, "*.*"))
	for _, f := range old {
		if strings.HasSuffix(f, ".msgpack") || strings.HasSuffix(f, ".json") {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range fixtures() {
		b, j := fixtureBytes(t, f)
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, j, "", "  "); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		base := filepath.Join(fixturesDir, f.file())
		if err := os.WriteFile(base+".msgpack", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(base+".json", pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d fixtures to %s", len(fixtures()), fixturesDir)
}

func TestFixtures(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	schemas := compileSchemas(t)
	fx := fixtures()
	perSchema := map[string]int{}
	want := map[string]bool{}
	for _, f := range fx {
		want[f.file()+".msgpack"] = true
		want[f.file()+".json"] = true
		perSchema[f.schema]++
	}
	for _, s := range schemaNames() {
		if perSchema[s] < 2 {
			t.Errorf("%s has %d fixtures, want at least 2", s, perSchema[s])
		}
	}
	files, _ := filepath.Glob(filepath.Join(fixturesDir, "*"))
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("stale fixture %s: no Go value in fixtures_test.go (go test -run TestFixtures -update rewrites the directory)", f)
		}
	}
	for _, f := range fx {
		t.Run(f.testName(), func(t *testing.T) {
			base := filepath.Join(fixturesDir, f.file())
			b, err := os.ReadFile(base + ".msgpack")
			if err != nil {
				t.Fatalf("%v (go test -run TestFixtures -update writes it)", err)
			}
			got, err := SchemaFor(f.schema)
			if err != nil {
				t.Fatal(err)
			}
			if err := Unmarshal(b, got); err != nil {
				t.Fatalf("decode %s.msgpack: %v", base, err)
			}
			if !reflect.DeepEqual(got, f.msg) {
				t.Errorf("%s.msgpack decodes to\n%#v\nbut fixtures_test.go has\n%#v\n(-update rewrites the file)", base, got, f.msg)
			}
			// Go -> msgpack of the decoded value gives the file back: no
			// key the Go type does not know, none it writes differently.
			again, err := encodeFixture(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("re-encoding the decoded value differs from %s.msgpack:\n got %x\nwant %x", base, again, b)
			}
			j, err := ToJSON(b)
			if err != nil {
				t.Fatalf("ToJSON: %v", err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas[f.schema].Validate(inst); err != nil {
				t.Errorf("%s does not validate against %s.json: %v", base, f.schema, err)
			}
			jf, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, jf); err != nil {
				t.Fatalf("%s.json: %v", base, err)
			}
			if !bytes.Equal(compact.Bytes(), j) {
				t.Errorf("%s.json differs from ToJSON of the .msgpack:\n got %s\nwant %s", base, compact.Bytes(), j)
			}
		})
	}
}

// TestSchemasReject proves the schemas are not vacuous: each case breaks
// one rule of a valid fixture and must fail validation, while an unknown
// extra key must pass.
func TestSchemasReject(t *testing.T) {
	schemas := compileSchemas(t)
	byFile := map[string]fixture{}
	for _, f := range fixtures() {
		byFile[f.file()] = f
	}
	tests := []struct {
		name    string
		fixture string
		mutate  func(m map[string]any)
		valid   bool
	}{
		{"probe_result_unknown_key_ok", "probe_result.v1.tcp_up", func(m map[string]any) { m["x_future"] = map[string]any{"a": 1} }, true},
		{"probe_result_missing_target", "probe_result.v1.tcp_up", func(m map[string]any) { delete(m, "t") }, false},
		{"probe_result_bad_state", "probe_result.v1.tcp_up", func(m map[string]any) { m["st"] = "sideways" }, false},
		{"probe_result_transition_reason", "probe_result.v1.tcp_up", func(m map[string]any) { m["r"] = "STALE" }, false},
		{"probe_result_bad_target_token", "probe_result.v1.tcp_up", func(m map[string]any) { m["t"] = "192.0.2.10:80" }, false},
		{"probe_result_seq_negative", "probe_result.v1.tcp_up", func(m map[string]any) { m["s"] = -1 }, false},
		{"transition_unknown_key_ok", "transition.v1.backend_down", func(m map[string]any) { m["x_future"] = []any{1, "a"} }, true},
		{"transition_bad_kind", "transition.v1.backend_down", func(m map[string]any) { m["k"] = "node" }, false},
		{"transition_missing_gen", "transition.v1.backend_down", func(m map[string]any) { delete(m, "gen") }, false},
		{"transition_vote_bad_state", "transition.v1.backend_down", func(m map[string]any) {
			m["votes"].([]any)[0].(map[string]any)["st"] = "maybe"
		}, false},
		{"transition_vote_missing_observer", "transition.v1.backend_down", func(m map[string]any) {
			delete(m["votes"].([]any)[1].(map[string]any), "o")
		}, false},
		{"transition_apply_port_too_big", "transition.v1.backend_down", func(m map[string]any) {
			m["apply"].(map[string]any)["port"] = 70000
		}, false},
		{"transition_apply_bad_proto", "transition.v1.backend_down", func(m map[string]any) {
			m["apply"].(map[string]any)["proto"] = "SCTP"
		}, false},
		{"transition_counts_wrong_type", "transition.v1.va_down", func(m map[string]any) {
			m["c"].(map[string]any)["up"] = "0"
		}, false},
		{"transition_action_params_not_strings", "transition.v1.va_down", func(m map[string]any) {
			m["act"].(map[string]any)["params"] = map[string]any{"ifname": 1}
		}, false},
		{"action_result_missing_ok", "action_result.v1.backend_update_ok", func(m map[string]any) { delete(m, "ok") }, false},
		{"action_result_bad_kind", "action_result.v1.backend_update_ok", func(m map[string]any) { m["k"] = "node" }, false},
		{"audit_record_fractional_ts", "audit_record.v1.pause", func(m map[string]any) { m["ts"] = 1.5 }, false},
		{"target_jitter_too_big", "target.v1.http_full", func(m map[string]any) { m["jit"] = 0.9 }, false},
		{"target_bad_proto", "target.v1.http_full", func(m map[string]any) { m["proto"] = "SCTP" }, false},
		{"target_observers_below_all", "target.v1.http_full", func(m map[string]any) { m["obs"] = -2 }, false},
		{"member_owned_not_integer", "member.v1.labels", func(m map[string]any) { m["owned"] = "many" }, false},
		{"member_unknown_key_ok", "member.v1.leaving", func(m map[string]any) { m["x_future"] = true }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := byFile[tt.fixture]
			if !ok {
				t.Fatalf("no fixture %s", tt.fixture)
			}
			_, j := fixtureBytes(t, f)
			var m map[string]any
			if err := json.Unmarshal(j, &m); err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			j, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			if err != nil {
				t.Fatal(err)
			}
			err = schemas[f.schema].Validate(inst)
			if tt.valid && err != nil {
				t.Errorf("want valid, got %v", err)
			}
			if !tt.valid && err == nil {
				t.Errorf("want a validation error for %s", j)
			}
		})
	}
}
