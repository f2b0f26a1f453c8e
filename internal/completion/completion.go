// Package completion writes bash and zsh completion scripts for a urfave/cli/v2 app, from
// its command and flag definitions, so the scripts cannot drift from the commands. Hidden
// commands are left out. The scripts are static: completing runs no program.
package completion

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Bash writes a bash completion script for app, for
// /usr/share/bash-completion/completions/NAME.
func Bash(w io.Writer, app *cli.App) {
	words, values := table(app)
	writeBash(w, app.Name, words, values)
}

// Zsh writes a zsh completion function for app, for a file _NAME on $fpath.
func Zsh(w io.Writer, app *cli.App) {
	words, values := table(app)
	writeZsh(w, app.Name, words, values)
}

// table maps each command path ("lnm", "lnm audit", "lnm audit query") to the
// words that may follow it: visible subcommands and flags. values lists the flags that take
// a value, after which a shell completes file names.
func table(app *cli.App) (words map[string][]string, values []string) {
	words = map[string][]string{}
	seen := map[string]bool{}
	addFlags := func(path string, flags []cli.Flag) {
		for _, f := range flags {
			for _, n := range f.Names() {
				w := "--" + n
				if len(n) == 1 {
					w = "-" + n
				}
				words[path] = append(words[path], w)
				if df, ok := f.(cli.DocGenerationFlag); ok && df.TakesValue() && !seen[w] {
					seen[w] = true
					values = append(values, w)
				}
			}
		}
	}
	var walk func(path string, cmds []*cli.Command, flags []cli.Flag)
	walk = func(path string, cmds []*cli.Command, flags []cli.Flag) {
		words[path] = []string{}
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			words[path] = append(words[path], c.Names()...)
			walk(path+" "+c.Name, c.Subcommands, c.Flags)
		}
		addFlags(path, flags)
		if !slices.Contains(words[path], "--help") {
			words[path] = append(words[path], "--help")
		}
		words[path] = dedupe(words[path])
	}
	walk(app.Name, app.Commands, app.Flags)
	slices.Sort(values)
	return words, values
}

// dedupe drops repeated words, keeping the first of each.
func dedupe(ws []string) []string {
	seen := map[string]bool{}
	return slices.DeleteFunc(ws, func(w string) bool {
		dup := seen[w]
		seen[w] = true
		return dup
	})
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeBash writes a bash completion function: it follows the command words typed so far
// through the table and offers what may come next; after a flag that takes a value it
// offers file names.
func writeBash(w io.Writer, name string, words map[string][]string, values []string) {
	fmt.Fprintf(w, "# bash completion for %s, generated from its command definitions\n_%s() {\n", name, name)
	fmt.Fprintln(w, "    local -A next=(")
	for _, k := range sortedKeys(words) {
		fmt.Fprintf(w, "        [%q]=%q\n", k, strings.Join(words[k], " "))
	}
	fmt.Fprintln(w, "    )")
	fmt.Fprintf(w, "    local values=%q\n", " "+strings.Join(values, " ")+" ")
	fmt.Fprint(w, strings.ReplaceAll(`    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path=NAME i
    if [[ $values == *" $prev "* ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ -n ${next["$path ${COMP_WORDS[i]}"]+set} ]] && path="$path ${COMP_WORDS[i]}"
    done
    COMPREPLY=($(compgen -W "${next[$path]}" -- "$cur"))
}
complete -o default -F _NAME NAME
`, "NAME", name))
}

// writeZsh writes the same walk for zsh's completion system.
func writeZsh(w io.Writer, name string, words map[string][]string, values []string) {
	fmt.Fprintf(w, "#compdef %s\n# zsh completion for %s, generated from its command definitions\n_%s() {\n", name, name, name)
	fmt.Fprintln(w, "    local -A next")
	fmt.Fprintln(w, "    next=(")
	for _, k := range sortedKeys(words) {
		fmt.Fprintf(w, "        %s %s\n", zshQuote(k), zshQuote(strings.Join(words[k], " ")))
	}
	fmt.Fprintln(w, "    )")
	fmt.Fprintf(w, "    local -a values=(%s)\n", strings.Join(values, " "))
	fmt.Fprint(w, strings.ReplaceAll(`    local path_=NAME i
    if (( ${values[(Ie)${words[CURRENT-1]}]} )); then
        _files
        return
    fi
    for ((i = 2; i < CURRENT; i++)); do
        (( ${+next[$path_ ${words[i]}]} )) && path_="$path_ ${words[i]}"
    done
    compadd -- ${=next[$path_]}
}
_NAME "$@"
`, "NAME", name))
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
