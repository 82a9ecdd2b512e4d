package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

func init() {
	register("completion", command{usage: "bash", short: "print a shell completion script (source <(vc completion bash))", run: completionCmd})
}

// The script completes command names, a command's flags (read from vc
// help COMMAND, so always the binary's own), image names (from vc images)
// and container names (from vc ps -a, with the line's --state-root).
const bashCompletion = `# bash completion for vc: source <(vc completion bash)
_vc() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmd="" i w
	local -a global=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		--state-root | --data-root | -state-root | -data-root)
			global+=("$w" "${COMP_WORDS[i+1]}"); ((i++)) ;;
		--state-root=* | --data-root=*) global+=("$w") ;;
		-*) ;;
		*) cmd=$w; break ;;
		esac
	done
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "%s" -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		local flags
		flags=$(vc help "$cmd" 2>/dev/null | sed -n 's/^  -\([^ ]*\).*/\1/p' | while read -r f; do
			if [[ ${#f} -gt 1 ]]; then echo "--$f"; else echo "-$f"; fi
		done)
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
		return
	fi
	case $cmd in
	help) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
	completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
	image) COMPREPLY=($(compgen -W "build ls" -- "$cur")) ;;
	volume) COMPREPLY=($(compgen -W "create ls inspect rm prune $(vc "${global[@]}" volume ls -q 2>/dev/null)" -- "$cur")) ;;
	run | create | rmi | save) COMPREPLY=($(compgen -W "busybox $(vc "${global[@]}" images 2>/dev/null | awk 'NR > 1 { print $1 ":" $2 }')" -- "$cur")) ;;
	pull | load | login | logout) ;;
	check | version | ps | stats | images) ;;
	*) COMPREPLY=($(compgen -W "$(vc "${global[@]}" ps -a --format '{{.Names}}' 2>/dev/null)" -- "$cur")) ;;
	esac
}
complete -F _vc vc
`

func completionCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("completion", commands["completion"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if args = fs.Args(); len(args) != 1 || args[0] != "bash" {
		return fmt.Errorf("SHELL %q: want bash: %w", strings.Join(args, " "), errdefs.ErrInvalidArgument)
	}
	var names []string
	for n, c := range commands {
		if c.short != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	all := strings.Join(names, " ")
	_, err := fmt.Fprintf(os.Stdout, bashCompletion, all, all)
	return err
}
