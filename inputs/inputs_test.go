package inputs

import (
	"context"
	"strings"
	"testing"
)

type nopConfig struct{}

func (nopConfig) Validate() error { return nil }

type nopInput struct{}

func (nopInput) Start(context.Context, Host) error { return nil }
func (nopInput) Stop(context.Context) error        { return nil }

func testPlugin(name string) Plugin {
	return Plugin{
		Name:      name,
		NewConfig: func() Config { return nopConfig{} },
		New:       func(Config) (Input, error) { return nopInput{}, nil },
	}
}

func TestRegistry(t *testing.T) {
	Add(testPlugin("zz_test_b"))
	Add(testPlugin("zz_test_a"))
	if _, ok := Get("zz_test_a"); !ok {
		t.Fatal("zz_test_a not registered")
	}
	if _, ok := Get("zz_test_missing"); ok {
		t.Fatal("unexpected plugin")
	}
	names := strings.Join(Names(), ",")
	if !strings.Contains(names, "zz_test_a,zz_test_b") {
		t.Fatalf("names not sorted: %s", names)
	}
}

func TestAddPanics(t *testing.T) {
	Add(testPlugin("zz_test_dup"))
	for name, p := range map[string]Plugin{
		"duplicate":  testPlugin("zz_test_dup"),
		"incomplete": {Name: "zz_test_incomplete"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Add did not panic")
				}
			}()
			Add(p)
		})
	}
}
