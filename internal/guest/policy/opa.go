//go:build policy

package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Built says whether this binary has the engine.
const Built = true

// maxReasons bounds what a denial reports of the document's print output.
const maxReasons = 4

// Engine is a compiled policy document. It is safe for concurrent use.
type Engine struct {
	compiler *ast.Compiler
	sum      string
	size     int
	// permissive is AllowRequestsFailingPolicy.
	permissive bool
	// rules are the rule names the document defines; consts those
	// defined by a boolean default alone, and its value.
	rules  map[string]bool
	consts map[string]bool

	mu       sync.Mutex
	prepared map[string]*rego.PreparedEvalQuery
}

// Compile parses and compiles doc. Rego v1 syntax is tried first, then
// v0 (the syntax of older Kata documents); an error names the line.
func Compile(ctx context.Context, doc string) (*Engine, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("%d bytes is more than the %d allowed: %w", len(doc), MaxSize, ErrInvalid)
	}
	var mod *ast.Module
	var err error
	for _, v := range []ast.RegoVersion{ast.RegoV1, ast.RegoV0} {
		var e error
		mod, e = ast.ParseModuleWithOpts("policy.rego", doc, ast.ParserOptions{RegoVersion: v, ProcessAnnotation: false})
		if e == nil {
			err = nil
			break
		}
		if err == nil {
			err = e // v1's error is the one reported
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", lineErrors(err), ErrInvalid)
	}
	if got := strings.TrimPrefix(mod.Package.Path.String(), "data."); got != Package {
		return nil, fmt.Errorf("line %d: package %s, want package %s: %w", mod.Package.Location.Row, got, Package, ErrInvalid)
	}
	c := ast.NewCompiler().WithEnablePrintStatements(true)
	if c.Compile(map[string]*ast.Module{"policy.rego": mod}); c.Failed() {
		return nil, fmt.Errorf("%s: %w", lineErrors(c.Errors), ErrInvalid)
	}
	h := sha256.Sum256([]byte(doc))
	e := &Engine{compiler: c, sum: hex.EncodeToString(h[:]), size: len(doc), rules: map[string]bool{}, consts: map[string]bool{}, prepared: map[string]*rego.PreparedEvalQuery{}}
	bodies := map[string]bool{}
	for _, r := range mod.Rules {
		name := r.Head.Name.String()
		if len(r.Head.Reference) > 0 {
			name = r.Head.Reference[0].Value.String()
		}
		e.rules[name] = true
		if b, ok := defaultBool(r); ok {
			e.consts[name] = b
		} else {
			bodies[name] = true
		}
	}
	// A rule with nothing but its default (default ReadStreamRequest :=
	// true, as Kata documents list them) is that constant: no evaluation
	// on the streams' calls.
	for name := range bodies {
		delete(e.consts, name)
	}
	if e.rules["AllowRequestsFailingPolicy"] {
		ok, _, err := e.eval(ctx, "AllowRequestsFailingPolicy", nil)
		if err != nil {
			return nil, fmt.Errorf("AllowRequestsFailingPolicy: %w (%w)", err, ErrInvalid)
		}
		e.permissive = ok
	}
	return e, nil
}

// defaultBool is the value of a default rule of a boolean constant.
func defaultBool(r *ast.Rule) (bool, bool) {
	if !r.Default || r.Head.Value == nil {
		return false, false
	}
	b, ok := r.Head.Value.Value.(ast.Boolean)
	return bool(b), ok
}

// lineErrors renders OPA's errors as "line N: message; ...".
func lineErrors(err error) string {
	var errs ast.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		return err.Error()
	}
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		if e.Location != nil {
			fmt.Fprintf(&b, "line %d: ", e.Location.Row)
		}
		b.WriteString(e.Message)
	}
	return b.String()
}

// SHA256 is the document's digest, hex.
func (e *Engine) SHA256() string { return e.sum }

// Size is the document's length in bytes.
func (e *Engine) Size() int { return e.size }

// Permissive reports AllowRequestsFailingPolicy.
func (e *Engine) Permissive() bool { return e.permissive }

var inputJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// Check evaluates rule with req as input. It returns a *Denied when the
// rule is defined and is not true; permissive reports a denial that
// AllowRequestsFailingPolicy turned into an allow (the caller logs it).
func (e *Engine) Check(ctx context.Context, rule string, req proto.Message) (permissive bool, err error) {
	if !e.rules[rule] {
		return false, nil
	}
	if v, ok := e.consts[rule]; ok {
		if v {
			return false, nil
		}
		return e.permissive, &Denied{Rule: rule, Reasons: []string{"its default is false"}}
	}
	b, err := inputJSON.Marshal(req)
	if err != nil {
		return false, fmt.Errorf("policy input for %s: %w", rule, err)
	}
	var input any
	if err := json.Unmarshal(b, &input); err != nil {
		return false, fmt.Errorf("policy input for %s: %w", rule, err)
	}
	ok, reasons, err := e.eval(ctx, rule, input)
	if err != nil {
		reasons = append(reasons, err.Error())
	}
	if ok && err == nil {
		return false, nil
	}
	if e.permissive {
		return true, &Denied{Rule: rule, Reasons: reasons}
	}
	return false, &Denied{Rule: rule, Reasons: reasons}
}

// printed collects the document's print output of one evaluation.
type printed struct{ lines []string }

func (p *printed) Print(_ print.Context, s string) error {
	if len(p.lines) < maxReasons {
		p.lines = append(p.lines, s)
	}
	return nil
}

// eval evaluates data.agent_policy.<rule> and says whether it is true.
func (e *Engine) eval(ctx context.Context, rule string, input any) (bool, []string, error) {
	q, err := e.query(ctx, rule)
	if err != nil {
		return false, nil, err
	}
	p := &printed{}
	opts := []rego.EvalOption{rego.EvalPrintHook(p)}
	if input != nil {
		opts = append(opts, rego.EvalInput(input))
	}
	rs, err := q.Eval(ctx, opts...)
	if err != nil {
		return false, p.lines, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return false, p.lines, nil // undefined: no default and no body held
	}
	v, ok := rs[0].Expressions[0].Value.(bool)
	if !ok {
		return false, p.lines, fmt.Errorf("rule %s is %v, not a boolean", rule, rs[0].Expressions[0].Value)
	}
	return v, p.lines, nil
}

// query prepares the query of rule once.
func (e *Engine) query(ctx context.Context, rule string) (*rego.PreparedEvalQuery, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if q, ok := e.prepared[rule]; ok {
		return q, nil
	}
	q, err := rego.New(
		rego.Query("data."+Package+"."+rule),
		rego.Compiler(e.compiler),
		rego.EnablePrintStatements(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", rule, err)
	}
	e.prepared[rule] = &q
	return &q, nil
}
