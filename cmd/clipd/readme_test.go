// readme_test.go: the README's exit-code table and its `clipd embed`, `clipd search` and `clipd
// embed-text` flags tables say what --help says, so none drifts from the code.
package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// readmeSection is the text of the README section that starts with heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	s = s[i+len(heading):]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

func TestReadmeExitCodes(t *testing.T) {
	row := regexp.MustCompile(`(?m)^\| ([0-9]+) \| (.+) \|$`)
	var readme []string
	for _, m := range row.FindAllStringSubmatch(readmeSection(t, "### Exit codes"), -1) {
		readme = append(readme, m[1]+" "+m[2])
	}
	var help []string
	for _, l := range strings.Split(exitCodesHelp, "\n")[1:] {
		f := strings.Fields(l)
		help = append(help, f[0]+" "+strings.Join(f[1:], " "))
	}
	if !slices.Equal(readme, help) {
		t.Errorf("README exit codes:\n%s\n--help:\n%s", strings.Join(readme, "\n"), strings.Join(help, "\n"))
	}
}

func TestReadmeEmbedFlags(t *testing.T) {
	checkReadmeFlags(t, "### `clipd embed` flags", newEmbedCommand())
}

func TestReadmeSearchFlags(t *testing.T) {
	checkReadmeFlags(t, "### `clipd search` flags", newSearchCommand())
}

func TestReadmeEmbedTextFlags(t *testing.T) {
	checkReadmeFlags(t, "### `clipd embed-text` flags", newEmbedTextCommand())
}

// checkReadmeFlags: the flags table of the README section under heading lists exactly the
// visible flags of cmd.
func checkReadmeFlags(t *testing.T, heading string, cmd *cli.Command) {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)`")
	var readme []string
	for _, m := range row.FindAllStringSubmatch(readmeSection(t, heading), -1) {
		readme = append(readme, m[1])
	}
	var help []string
	for _, f := range cmd.Flags {
		if h, ok := f.(interface{ IsVisible() bool }); ok && !h.IsVisible() {
			continue
		}
		help = append(help, f.Names()[0])
	}
	slices.Sort(readme)
	slices.Sort(help)
	if !slices.Equal(readme, help) {
		t.Errorf("README's %s %v\n--help's %v", heading, readme, help)
	}
}
