//go:build !policy

package policy

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Built says whether this binary has the engine.
const Built = false

// Engine is a compiled policy document; without the engine there is none.
type Engine struct{}

// Compile returns ErrNoEngine.
func Compile(context.Context, string) (*Engine, error) { return nil, ErrNoEngine }

// SHA256 is the document's digest, hex.
func (e *Engine) SHA256() string { return "" }

// Size is the document's length in bytes.
func (e *Engine) Size() int { return 0 }

// Permissive reports AllowRequestsFailingPolicy.
func (e *Engine) Permissive() bool { return false }

// Check allows everything: there is no Engine to call it on.
func (e *Engine) Check(context.Context, string, proto.Message) (bool, error) { return false, nil }
