package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is where the Dockerfile and the Makefile are, seen from this package.
const repoRoot = ".."

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ENV...
	args string
	line int
}

// stage is one FROM ... [AS name] and its instructions. Instructions before the first FROM
// (global ARGs) are in a stage with an empty from.
type stage struct {
	from, name string
	instrs     []instruction
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile splits a Dockerfile into stages. It knows what this repository's
// Dockerfile uses: comments, backslash continuations, FROM ... AS.
func parseDockerfile(text string) ([]stage, error) {
	stages := []stage{{}}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue // Docker drops comment lines inside a continuation
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("Dockerfile:%d: FROM %q: expected IMAGE [AS NAME]", start, in.args)
			}
			stages = append(stages, st)
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if len(stages) < 2 {
		return nil, errors.New("Dockerfile: no FROM")
	}
	return stages, nil
}

// shellWords splits a command line the way sh does for what a build command holds:
// white space separates words, quotes group them (and are removed), a backslash escapes.
// Variables are not expanded: ${VERSION} stays as it is on both sides of the comparison.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", c, s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// makefile is the part of a Makefile this test reads: variables and rule recipes.
type makefile struct {
	vars    map[string]string
	recipes map[string][]string
}

var (
	makeAssign = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$`)
	makeRule   = regexp.MustCompile(`^([A-Za-z0-9_.-]+)\s*:([^=].*)?$`)
	makeRef    = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
)

func parseMakefile(text string) makefile {
	mk := makefile{vars: map[string]string{}, recipes: map[string][]string{}}
	rule := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "\t") {
			if rule != "" {
				mk.recipes[rule] = append(mk.recipes[rule], strings.TrimSpace(line))
			}
			continue
		}
		rule = ""
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := makeAssign.FindStringSubmatch(line); m != nil {
			mk.vars[m[1]] = strings.TrimSpace(m[3])
			continue
		}
		if m := makeRule.FindStringSubmatch(line); m != nil {
			rule = m[1]
		}
	}
	return mk
}

// expand replaces $(NAME) with the variable's value, recursively; overrides win (the
// values that differ by design between make and docker build: the go command and the
// version, which the Dockerfile takes as a build argument).
func (mk makefile) expand(s string, overrides map[string]string) (string, error) {
	for range 20 {
		next := makeRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := makeRef.FindStringSubmatch(ref)[1]
			if v, ok := overrides[name]; ok {
				return v
			}
			return mk.vars[name]
		})
		if next == s {
			return strings.ReplaceAll(s, "$$", "$"), nil
		}
		s = next
	}
	return "", fmt.Errorf("Makefile: variables nest too deep in %q", s)
}

// dropOutput removes "-o PATH": where the binary goes is the one thing allowed to differ.
func dropOutput(words []string) []string {
	out := slices.Clone(words)
	if i := slices.Index(out, "-o"); i >= 0 && i+1 < len(out) {
		out = slices.Delete(out, i, i+2)
	}
	return out
}

// buildCommands returns the words of the Makefile's `build` recipe and of the Dockerfile
// build stage's `go build` command.
func buildCommands(makefileText, dockerfileText string) (mkWords, dockerWords []string, err error) {
	mk := parseMakefile(makefileText)
	recipe := mk.recipes["build"]
	if len(recipe) != 1 {
		return nil, nil, fmt.Errorf("Makefile: the build target has %d recipe lines, want 1", len(recipe))
	}
	cmd, err := mk.expand(recipe[0], map[string]string{"GO": "go", "VERSION": "${VERSION}"})
	if err != nil {
		return nil, nil, err
	}
	if mkWords, err = shellWords(cmd); err != nil {
		return nil, nil, fmt.Errorf("Makefile build: %w", err)
	}
	stages, err := parseDockerfile(dockerfileText)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range stages[1:] {
		for _, run := range st.all("RUN") {
			words, err := shellWords(run.args)
			if err != nil {
				return nil, nil, fmt.Errorf("Dockerfile:%d: %w", run.line, err)
			}
			// A RUN may chain commands; take the one that runs go build.
			for seg := range strings.SplitSeq(strings.Join(words, "\x00"), "\x00&&\x00") {
				w := strings.Split(seg, "\x00")
				if i := slices.Index(w, "go"); i >= 0 && i+1 < len(w) && w[i+1] == "build" {
					if dockerWords != nil {
						return nil, nil, fmt.Errorf("Dockerfile:%d: a second go build command", run.line)
					}
					dockerWords = w
				}
			}
		}
	}
	if dockerWords == nil {
		return nil, nil, errors.New("Dockerfile: no RUN ... go build in any stage")
	}
	return mkWords, dockerWords, nil
}

// compareBuild is the drift check: the same words, the output path aside.
func compareBuild(makefileText, dockerfileText string) error {
	mkWords, dockerWords, err := buildCommands(makefileText, dockerfileText)
	if err != nil {
		return err
	}
	a, b := dropOutput(mkWords), dropOutput(dockerWords)
	if !slices.Equal(a, b) {
		return fmt.Errorf("the Dockerfile's build command drifted from the Makefile's build target:\n  make:   %q\n  docker: %q", a, b)
	}
	return nil
}

func TestDockerfileBuildsLikeTheMakefile(t *testing.T) {
	mk, df := readFile(t, filepath.Join(repoRoot, "Makefile")), readFile(t, filepath.Join(repoRoot, "Dockerfile"))
	if err := compareBuild(mk, df); err != nil {
		t.Fatal(err)
	}
	mkWords, _, _ := buildCommands(mk, df)
	// What makes the image's binary what it must be, whatever the Makefile says.
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/apmkit"} {
		if !slices.Contains(mkWords, want) {
			t.Errorf("build command %q lacks %s", mkWords, want)
		}
	}
}

// TestBuildDriftIsCaught: the comparison fails when either side changes.
func TestBuildDriftIsCaught(t *testing.T) {
	mk, df := readFile(t, filepath.Join(repoRoot, "Makefile")), readFile(t, filepath.Join(repoRoot, "Dockerfile"))
	for name, c := range map[string]struct{ mk, df string }{
		"flag dropped in the Dockerfile": {mk, strings.Replace(df, " -trimpath", "", 1)},
		"flag added to the Makefile":     {strings.Replace(mk, "build -trimpath", "build -race -trimpath", 1), df},
		"ldflags changed":                {mk, strings.Replace(df, "-s -w -X", "-s -X", 1)},
		"other package built":            {mk, strings.Replace(df, " ./cmd/apmkit", " ./cmd/ppload", 1)},
		"no go build at all":             {mk, strings.ReplaceAll(df, "go build", "go vet")},
	} {
		if c.mk == mk && c.df == df {
			t.Fatalf("%s: the mutation did not apply; update this test", name)
		}
		if err := compareBuild(c.mk, c.df); err == nil {
			t.Errorf("%s: not detected", name)
		}
	}
}

// image is what the Dockerfile's final stage gives a container.
type image struct {
	entrypoint []string
	env        map[string]string
	volumes    []string
	expose     []string
	user       string
}

func parseImage(dockerfileText string) (image, error) {
	stages, err := parseDockerfile(dockerfileText)
	if err != nil {
		return image{}, err
	}
	final := stages[len(stages)-1]
	img := image{env: map[string]string{}}
	for _, in := range final.instrs {
		switch in.cmd {
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &img.entrypoint); err != nil {
				return image{}, fmt.Errorf("Dockerfile:%d: ENTRYPOINT must be the exec (JSON) form, so signals reach apmkit: %v", in.line, err)
			}
		case "ENV":
			words, err := shellWords(in.args)
			if err != nil {
				return image{}, err
			}
			for _, w := range words {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					return image{}, fmt.Errorf("Dockerfile:%d: ENV %q: use KEY=VALUE", in.line, in.args)
				}
				img.env[k] = v
			}
		case "VOLUME":
			var vols []string
			if err := json.Unmarshal([]byte(in.args), &vols); err != nil {
				vols = strings.Fields(in.args)
			}
			img.volumes = append(img.volumes, vols...)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				img.expose = append(img.expose, strings.TrimSuffix(p, "/tcp"))
			}
		case "USER":
			img.user = in.args
		}
	}
	return img, nil
}

// flagValue returns the value of --name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func TestDockerImage(t *testing.T) {
	img, err := parseImage(readFile(t, filepath.Join(repoRoot, "Dockerfile")))
	if err != nil {
		t.Fatal(err)
	}
	ep := img.entrypoint
	if len(ep) < 2 || filepath.Base(ep[0]) != "apmkit" || ep[1] != "run" {
		t.Fatalf("ENTRYPOINT %q: want apmkit run --conf-dir ... --data-dir ...", ep)
	}
	confDir, dataDir := flagValue(ep, "--conf-dir"), flagValue(ep, "--data-dir")
	if confDir == "" || dataDir == "" {
		t.Fatalf("ENTRYPOINT %q: set --conf-dir and --data-dir explicitly", ep)
	}
	for _, dir := range []string{confDir, dataDir} {
		if !slices.Contains(img.volumes, dir) {
			t.Errorf("%s is not a VOLUME (%q)", dir, img.volumes)
		}
	}
	for _, port := range []string{"9991", "9992", "9993", "9529"} {
		if !slices.Contains(img.expose, port) {
			t.Errorf("port %s not EXPOSEd (%q)", port, img.expose)
		}
	}
	if u, _, _ := strings.Cut(img.user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("USER %q: the image must run as a non-root user", img.user)
	}
	if l, ok := img.env["ENV_HTTP_LISTEN"]; ok && isLoopback(l) {
		t.Errorf("ENV ENV_HTTP_LISTEN=%s is unreachable from outside the container", l)
	}
}
