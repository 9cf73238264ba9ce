package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSamplesMatchTheCode(t *testing.T) {
	for path, want := range samples(filepath.Join("..", "..", "conf.d")) {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run make confd)", err)
		}
		if string(got) != want {
			t.Errorf("%s drifted from the code: run make confd and commit it", path)
		}
	}
}
