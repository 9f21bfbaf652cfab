// Package deploy holds deployment examples; its test keeps them loadable.
package deploy

import (
	"errors"
	"io"
	"os"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fedgate/fedgate/gateway/config"
)

// TestExampleConfigLoads parses the fedgate.yml of the Kubernetes example's
// ConfigMap with fedgate's own config parser.
func TestExampleConfigLoads(t *testing.T) {
	f, err := os.Open("fedgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	found := false
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if cfg, ok := doc.Data["fedgate.yml"]; doc.Kind == "ConfigMap" && ok {
			found = true
			parsed, err := config.Parse([]byte(cfg))
			if err != nil {
				t.Fatalf("the example's fedgate.yml does not load: %v", err)
			}
			if parsed.Ring.DNS == "" {
				t.Error("the example should discover its ring by DNS")
			}
		}
	}
	if !found {
		t.Fatal("no ConfigMap with fedgate.yml in fedgate.yaml")
	}
}
