// Package metrics writes the agent's metrics in the Prometheus text
// exposition format (version 0.0.4), and collects the agent's and the
// guest's own figures from /proc.
//
// The writer is small and hand-written: the agent needs a dozen gauges,
// not a client library.
package metrics

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Type is a metric family's type.
type Type string

// Metric types.
const (
	Gauge   Type = "gauge"
	Counter Type = "counter"
	Untyped Type = "untyped"
)

// Label is a name and value pair.
type Label struct {
	Name, Value string
}

// Sample is one value of a family, with its labels.
type Sample struct {
	Labels []Label
	Value  float64
}

// Family is a named set of samples of one type.
type Family struct {
	Name    string
	Help    string
	Type    Type
	Samples []Sample
}

// One makes a family of a single unlabelled sample.
func One(name, help string, typ Type, v float64) Family {
	return Family{Name: name, Help: help, Type: typ, Samples: []Sample{{Value: v}}}
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Write writes the families in the text format. A family with a bad name,
// type or label name, or a name used twice, is an error and nothing is
// written.
func Write(w io.Writer, fams []Family) error {
	var b strings.Builder
	seen := map[string]bool{}
	for _, f := range fams {
		if !metricName.MatchString(f.Name) {
			return fmt.Errorf("metric name %q is invalid", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("metric %s appears twice", f.Name)
		}
		seen[f.Name] = true
		switch f.Type {
		case Gauge, Counter, Untyped:
		default:
			return fmt.Errorf("metric %s: unknown type %q", f.Name, f.Type)
		}
		if f.Help != "" {
			fmt.Fprintf(&b, "# HELP %s %s\n", f.Name, escapeHelp(f.Help))
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n", f.Name, f.Type)
		for _, s := range f.Samples {
			b.WriteString(f.Name)
			if len(s.Labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.Labels {
					if !labelName.MatchString(l.Name) || strings.HasPrefix(l.Name, "__") {
						return fmt.Errorf("metric %s: label name %q is invalid", f.Name, l.Name)
					}
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=\"%s\"", l.Name, escapeLabel(l.Value))
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(s.Value))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
