package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
)

// expandShort splits combined one-letter flags as docker takes them
// ("-it" is "-i -t", "-dit" is "-d -i -t") when every letter is a boolean
// flag of fs. It stops at the first argument that is not a flag (the
// image, or "--"): what follows is the container's.
func expandShort(fs *flag.FlagSet, args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return append(out, args[i:]...)
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			out = append(out, a)
			continue
		}
		if f := fs.Lookup(name); f != nil {
			out = append(out, a)
			if !isBool(f) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if strings.HasPrefix(a, "--") || len(name) < 2 || !allBoolLetters(fs, name) {
			out = append(out, a) // flag.Parse names it as unknown
			continue
		}
		for _, c := range name {
			out = append(out, "-"+string(c))
		}
	}
	return out
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func allBoolLetters(fs *flag.FlagSet, s string) bool {
	for _, c := range s {
		f := fs.Lookup(string(c))
		if f == nil || !isBool(f) {
			return false
		}
	}
	return true
}

// resolveEnv turns docker's -e forms into K=V: "K=V" as it is, "K" the
// host's value of K (left out when the host has none, as docker does),
// and adds the K=V lines of each --env-file (blank lines and # comments
// skipped; a line without = takes the host's value too).
func resolveEnv(envs, files []string) ([]string, error) {
	var out []string
	add := func(e string) {
		if strings.Contains(e, "=") {
			out = append(out, e)
		} else if v, ok := os.LookupEnv(e); ok {
			out = append(out, e+"="+v)
		}
	}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--env-file %q: %w", path, err)
		}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, "=") {
				f.Close()
				return nil, fmt.Errorf("--env-file %q: line %d: %q: no variable name", path, n, line)
			}
			add(line)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--env-file %q: %w", path, err)
		}
	}
	for _, e := range envs {
		if e == "" || strings.HasPrefix(e, "=") {
			return nil, fmt.Errorf("-e %q: no variable name", e)
		}
		add(e)
	}
	return out, nil
}
