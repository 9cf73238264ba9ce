// Command gen writes docs/CONFIG.md, the reference of every config option and environment
// variable, rendered by config.Reference from the config structs themselves: `make docs`
// runs it and its test fails when the committed file differs from what it would write.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/apmkit/apmkit/config"
	_ "github.com/apmkit/apmkit/inputs/all"
)

func main() {
	out := flag.String("out", "docs/CONFIG.md", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, []byte(config.Reference()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}
