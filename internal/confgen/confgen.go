// Command confgen writes the sample configs in conf.d from the code (make confd); its test
// fails when the committed samples drift from what the code would write.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs"
	_ "github.com/apmkit/apmkit/inputs/all"
)

func main() {
	dir := flag.String("dir", "conf.d", "conf dir to write the samples into")
	flag.Parse()
	for path, text := range samples(*dir) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", path)
	}
}

// samples maps each sample file under dir to its content.
func samples(dir string) map[string]string {
	out := map[string]string{filepath.Join(dir, config.MainFile+".sample"): config.MainSample()}
	for _, name := range inputs.Names() {
		p, _ := inputs.Get(name)
		out[filepath.Join(dir, name, name+".conf.sample")] = config.InputSample(p)
	}
	return out
}
